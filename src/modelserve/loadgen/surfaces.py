"""The chat surfaces the streaming benchmark can drive, each in its own wire format: OpenAI
Chat Completions, OpenAI Responses, Anthropic Messages and Ollama's /api/chat. One request
shape (a user prompt, greedy, `max_tokens` new tokens, streamed) and one reading of the
stream (text deltas, the end, the completion tokens the server reports), so the surfaces'
tok/s compare like for like: an adapter's cost is what differs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Line:
    """What one line of a stream says."""

    text: bool = False  # it carries generated text
    done: bool = False  # the stream's last word
    tokens: int | None = None  # completion tokens, where the server reports them
    error: str | None = None
    # Chat Completions only: the text itself (multi-turn histories carry the answers), the
    # usage object (cached and prediction tokens) and llama-server's `timings` (its drafts).
    content: str = ""
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None


NOTHING = Line()


@dataclass(frozen=True)
class Surface:
    path: str
    body: Callable[[str, str, int], dict[str, Any]]  # (model, prompt, max_tokens)
    read: Callable[[str], Line]
    headers: dict[str, str]


def _sse(line: str) -> dict[str, Any] | str | None:
    if not line.startswith("data: "):
        return None
    payload = line[6:].strip()
    return payload if payload == "[DONE]" else json.loads(payload)


def _read_chat(line: str) -> Line:
    data = _sse(line)
    if data is None:
        return NOTHING
    if data == "[DONE]":
        return Line(done=True)
    assert isinstance(data, dict)
    if "error" in data:
        return Line(error=str(data["error"])[:200])
    usage = data.get("usage") or None
    content = "".join((c.get("delta") or {}).get("content") or ""
                      for c in data.get("choices") or [])
    return Line(text=bool(content), tokens=(usage or {}).get("completion_tokens"),
                content=content, usage=usage, timings=data.get("timings") or None)


def _read_responses(line: str) -> Line:
    data = _sse(line)
    if not isinstance(data, dict):
        return NOTHING
    kind = data.get("type")
    if kind == "response.output_text.delta":
        return Line(text=bool(data.get("delta")))
    if kind in ("response.completed", "response.incomplete"):
        return Line(done=True, tokens=data["response"]["usage"]["output_tokens"])
    if kind in ("response.failed", "error"):
        return Line(error=json.dumps(data)[:200])
    return NOTHING


def _read_messages(line: str) -> Line:
    data = _sse(line)
    if not isinstance(data, dict):
        return NOTHING
    kind = data.get("type")
    if kind == "content_block_delta":
        return Line(text=bool(data["delta"].get("text")))
    if kind == "message_delta":
        return Line(tokens=data["usage"]["output_tokens"])
    if kind == "message_stop":
        return Line(done=True)
    if kind == "error":
        return Line(error=json.dumps(data)[:200])
    return NOTHING


def _read_ollama(line: str) -> Line:
    if not line.strip():
        return NOTHING
    data = json.loads(line)
    if "error" in data:
        return Line(error=str(data["error"])[:200])
    if data.get("done"):
        return Line(done=True, tokens=data.get("eval_count"))
    return Line(text=bool((data.get("message") or {}).get("content")))


def _user(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


SURFACES: dict[str, Surface] = {
    "chat": Surface("/v1/chat/completions", lambda model, prompt, n: {
        "model": model, "messages": _user(prompt), "max_tokens": n, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True}}, _read_chat, {}),
    "responses": Surface("/v1/responses", lambda model, prompt, n: {
        "model": model, "input": prompt, "max_output_tokens": n, "temperature": 0,
        "stream": True, "store": False}, _read_responses, {}),
    "messages": Surface("/v1/messages", lambda model, prompt, n: {
        "model": model, "messages": _user(prompt), "max_tokens": n, "temperature": 0,
        "stream": True}, _read_messages, {"anthropic-version": "2023-06-01"}),
    "ollama": Surface("/api/chat", lambda model, prompt, n: {
        "model": model, "messages": _user(prompt), "stream": True,
        "options": {"num_predict": n, "temperature": 0}}, _read_ollama, {}),
}
