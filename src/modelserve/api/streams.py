"""Framing for streamed responses (server-sent events, newline-delimited JSON), and work
that stops when the client goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from modelserve.api.errors import APIError

T = TypeVar("T")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


async def unless_disconnected(request: Request, work: Awaitable[T],
                              gens: Sequence[Cancellable]) -> T:
    """Await `work`, but cancel the sequences as soon as the client goes away."""
    async def wait_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # client gone, or this request was cancelled (wall-time limit)
            task.cancel()
            for gen in gens:
                gen.cancel()
    # Not done: the client went away first; the cancel above is still on its way (so the
    # task is not `cancelled()` yet, and asking for its result would be an error, a 500).
    if not task.done() or task.cancelled():
        raise APIError(499, "client disconnected", code="client_closed_request")
    return task.result()




def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"


def sse_json(body: dict[str, Any]) -> str:
    return sse(json.dumps(body, separators=(",", ":"), ensure_ascii=False))


def ndjson_stream(lines: AsyncIterator[str]) -> StreamingResponse:
    """Ollama's framing: one JSON object per line."""
    return StreamingResponse(lines, media_type="application/x-ndjson")


def json_line(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n"
