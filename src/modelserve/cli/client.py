"""`modelserve ps | load | unload | stop`: what a running server has, and loading or unloading
its models (Ollama's `ps` and `stop`), through its /admin API."""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelserve.cli.ps_table import table
from modelserve.cli.remote import Server, add_server_args


def _ps(args: argparse.Namespace) -> None:
    with Server.from_args(args) as server:
        listing = server.call("GET", "/admin/models", params={"stats": "true"})
    entries: list[dict[str, Any]] = listing.get("data", [])
    if args.json:
        for entry in entries:
            print(json.dumps(entry))
    else:
        print(table(entries))


def _change(args: argparse.Namespace, action: str) -> None:
    with Server.from_args(args) as server:
        entry = server.call("POST", f"/admin/models/{action}", json={"name": args.name},
                            params={"wait": "true"} if args.wait else None)
    print(f"{entry.get('name', args.name)}: {entry.get('state', '?')}")


def _load(args: argparse.Namespace) -> None:
    _change(args, "load")


def _unload(args: argparse.Namespace) -> None:
    _change(args, "unload")


def register(sub: Any) -> None:
    ps = sub.add_parser("ps", help="the running server's models: state, memory, keep-alive")
    ps.add_argument("--json", action="store_true", help="one JSON object per model")
    add_server_args(ps)
    ps.set_defaults(func=_ps)

    for name, func, verb in (("load", _load, "load"), ("unload", _unload, "unload"),
                             ("stop", _unload, "unload (as `ollama stop`)")):
        parser = sub.add_parser(name, help=f"{verb} a model on the running server")
        parser.add_argument("name", help="the model's name, as `modelserve ps` shows it")
        parser.add_argument("--wait", action="store_true",
                            help=f"return once the {verb.split()[0]} is done")
        add_server_args(parser)
        parser.set_defaults(func=func)
