"""`modelserve run MODEL [PROMPT...]`: chat with a running server's model in the terminal, as
`ollama run` does: one answer for a prompt (or piped stdin), else a `>>> ` session."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any
from urllib.parse import quote

from modelserve.cli.chat_stream import Answer, stream_answer
from modelserve.cli.remote import APIFailure, Server, add_server_args, fail

QUOTES = '"""'
HELP = """Available commands:
  /clear    forget this session's messages (the system prompt stays)
  /bye      exit (as Ctrl-D does)
  /?, /help this help

Use \"\"\" to begin and end a message of several lines.
Ctrl-C stops an answer; Ctrl-D or /bye exits."""


def _request(args: argparse.Namespace, messages: list[dict[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": args.model, "messages": messages}
    for field in ("max_tokens", "temperature", "seed"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    return body


def _ask(server: Server, args: argparse.Namespace, messages: list[dict[str, str]]) -> Answer:
    answer = stream_answer(server, _request(args, messages), sys.stdout)
    if args.verbose:
        print(answer.summary(), file=sys.stderr, flush=True)
    return answer


def _start(args: argparse.Namespace) -> list[dict[str, str]]:
    return [{"role": "system", "content": args.system}] if args.system else []


def _once(server: Server, args: argparse.Namespace, prompt: str) -> None:
    if not prompt.strip():
        fail("nothing to ask: the prompt is empty")
    messages = [*_start(args), {"role": "user", "content": prompt}]
    try:
        _ask(server, args, messages)
    except APIFailure as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        sys.exit(130)


def read_message(read: Any = input) -> str:
    """One message: a line, or the lines between a pair of triple quotes (Ctrl-C or EOF
    inside them raise as at the prompt)."""
    line = read(">>> ")
    if not line.lstrip().startswith(QUOTES):
        return str(line).strip()
    first = line.lstrip()[len(QUOTES):]
    if first.rstrip().endswith(QUOTES):  # """all on one line"""
        return str(first.rstrip()[:-len(QUOTES)]).strip()
    lines = [first] if first else []
    while True:
        line = read("... ")
        if line.rstrip().endswith(QUOTES):
            lines.append(line.rstrip()[:-len(QUOTES)])
            return "\n".join(lines).strip()
        lines.append(line)


def _command(text: str, messages: list[dict[str, str]], args: argparse.Namespace) -> bool:
    """A slash command; False when it asks to leave."""
    word = text.split()[0]
    if word in ("/bye", "/exit"):
        return False
    if word == "/clear":
        messages[:] = _start(args)
        print("Cleared session context")
    elif word in ("/?", "/help"):
        print(HELP)
    else:
        print(f"Unknown command '{word}'. Type /? for help")
    return True


def _use_readline() -> None:
    """Line editing and the session's input history for input(), where Python has it."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (importing it is what turns it on)


def _interactive(server: Server, args: argparse.Namespace) -> None:
    server.call("GET", f"/v1/models/{quote(args.model, safe='')}")  # unknown: 404, exit 1
    _use_readline()
    messages = _start(args)
    print('Send a message (/? for help, """ for several lines)', flush=True)
    while True:
        try:
            text = read_message()
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print("\nUse Ctrl + d or /bye to exit.")
            continue
        if not text:
            continue
        if text.startswith("/"):
            if not _command(text, messages, args):
                return
            continue
        messages.append({"role": "user", "content": text})
        try:
            answer = _ask(server, args, messages)
        except (APIFailure, KeyboardInterrupt) as exc:
            messages.pop()  # an answer cut short or refused is not part of the history
            if isinstance(exc, APIFailure):
                print(f"modelserve: {exc.message}", file=sys.stderr, flush=True)
            print()
            continue
        messages.append({"role": "assistant", "content": answer.text})
        print()


def _run(args: argparse.Namespace) -> None:
    with Server(args.url, args.api_key, timeout=None) as server:
        if args.prompt:
            _once(server, args, " ".join(args.prompt))
        elif not sys.stdin.isatty():
            _once(server, args, sys.stdin.read())
        else:
            _interactive(server, args)


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="chat with a model of the running server")
    run.add_argument("model", help="a chat model's name, as `modelserve ps` shows it")
    run.add_argument("prompt", nargs="*", help="answer this once and exit (default: a "
                     "session, or the whole of stdin when it is piped)")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--max-tokens", type=int, help="most tokens per answer")
    run.add_argument("--temperature", type=float)
    run.add_argument("--seed", type=int)
    run.add_argument("--verbose", action="store_true",
                     help="print token counts and speed after each answer (on stderr)")
    add_server_args(run)
    run.set_defaults(func=_run)
