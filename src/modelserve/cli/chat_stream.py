"""One streamed answer from /v1/chat/completions, written to the terminal as it arrives."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, TextIO

from modelserve.cli.remote import APIFailure, Server, error_message, failure_of

DIM, RESET = "\x1b[2m", "\x1b[0m"


@dataclass
class Answer:
    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """What `--verbose` prints after an answer, as `ollama run --verbose` does."""
        rate = (f"{self.completion_tokens / self.seconds:.1f} tokens/s"
                if self.completion_tokens and self.seconds > 0 else "-")
        return (f"prompt tokens: {self.prompt_tokens}, completion tokens: "
                f"{self.completion_tokens}, {self.seconds:.2f} s, {rate}")


def _events(lines: Any) -> Any:
    """The JSON payloads of an SSE stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


class Printer:
    """Text as it arrives; reasoning dimmed on a terminal, left out elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.dimmed = False
        self.ended_with_newline = True

    def write(self, text: str, reasoning: bool = False) -> None:
        if not text or (reasoning and not self.tty):
            return
        if reasoning != self.dimmed:
            self.out.write(DIM if reasoning else RESET)
            self.dimmed = reasoning
        self.out.write(text)
        self.out.flush()
        self.ended_with_newline = text.endswith("\n")

    def finish(self) -> None:
        if self.dimmed:
            self.out.write(RESET)
            self.dimmed = False
        if not self.ended_with_newline:
            self.out.write("\n")
        self.out.flush()


def stream_answer(server: Server, body: dict[str, Any], out: TextIO) -> Answer:
    """POST a streamed chat request and print its text; the whole answer and its usage.
    An API error (before or during the stream) raises APIFailure; Ctrl-C closes the stream
    (leaving the `with`), which the server sees as a disconnect and stops generating."""
    answer, printer = Answer(), Printer(out)
    started = time.monotonic()
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    try:
        with server.reaching(), server.http.stream("POST", "/v1/chat/completions",
                                                   json=body) as response:
            if response.status_code >= 400:
                response.read()
                raise failure_of(response)
            for event in _events(response.iter_lines()):
                if "error" in event:
                    raise APIFailure(500, error_message(500, event))
                usage = event.get("usage") or {}
                answer.prompt_tokens = usage.get("prompt_tokens", answer.prompt_tokens)
                answer.completion_tokens = usage.get("completion_tokens",
                                                     answer.completion_tokens)
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    printer.write(delta.get("reasoning_content") or "", reasoning=True)
                    piece = delta.get("content") or ""
                    printer.write(piece)
                    answer.text += piece
    finally:
        printer.finish()
    answer.seconds = time.monotonic() - started
    return answer
