"""The `modelserve` command: one module per group of subcommands, each adding its parsers."""

from __future__ import annotations

import argparse
import os
import sys

from modelserve.cli import bench, chat_repl, client, completion, serve, store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (serve, store, client, chat_repl, bench, completion):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:
        # `modelserve list --json | head`: the reader left; end quietly, as any Unix tool
        # does (not by SIGPIPE's default action: main() also runs inside other programs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
