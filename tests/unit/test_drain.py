"""The drain's logic on a tiny ASGI app: refusing new requests, the deadline, clean endings.
(The real server under SIGTERM is tested in tests/integration/test_shutdown.py.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from modelserve.api.drain import Drain, DrainGate


def http_scope(path: str = "/v1/chat/completions") -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": [],
            "query_string": b"", "asgi": {"version": "3.0"}}


async def endless_stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    while True:
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        await asyncio.sleep(0.01)


async def never_answers(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(3600)


async def answers_soon(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(0.05)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def call(gate: DrainGate, path: str = "/v1/chat/completions") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await gate(http_scope(path), receive, send)
    return sent


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def drain_while(drain: Drain, calls: list[asyncio.Task[Any]]) -> float:
    """Start draining with `calls` in flight; tick like the server does until it may exit."""
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    drain.request()
    for _ in range(100):
        if drain.tick():
            break
        await asyncio.sleep(0.02)
    await asyncio.gather(*calls)
    return loop.time() - start


def test_requests_in_flight_finish_and_new_ones_get_503() -> None:
    drain = Drain(timeout=5)
    gate = DrainGate(answers_soon, drain)

    async def scenario() -> tuple[list[Message], list[Message], list[Message], float]:
        running = asyncio.create_task(call(gate))
        took = await drain_while(drain, [running])
        return running.result(), await call(gate), await call(gate, "/health"), took

    finished, refused, health, took = asyncio.run(scenario())
    assert finished[0]["status"] == 200 and body_of(finished) == b"{}"
    assert took < 1  # nothing left in flight: no waiting for the deadline
    assert refused[0]["status"] == 503
    headers = dict(refused[0]["headers"])
    assert headers[b"retry-after"] == b"2" and headers[b"connection"] == b"close"
    assert json.loads(body_of(refused))["error"]["code"] == "server_shutting_down"
    assert health[0]["status"] == 200 and drain.in_flight == 0


def test_deadline_ends_a_stream_with_an_error_event_and_done() -> None:
    drain = Drain(timeout=0.3)
    gate = DrainGate(endless_stream, drain)

    async def scenario() -> tuple[list[Message], float]:
        running = asyncio.create_task(call(gate))
        took = await drain_while(drain, [running])
        return running.result(), took

    sent, took = asyncio.run(scenario())
    assert 0.25 < took < 1.5
    events = body_of(sent).decode().strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][len("data: "):])["error"]["code"] == "server_shutting_down"
    assert sent[-1]["more_body"] is False


def test_deadline_gives_an_unanswered_request_a_503_body() -> None:
    drain = Drain(timeout=0.2)
    gate = DrainGate(never_answers, drain)

    async def scenario() -> list[Message]:
        running = asyncio.create_task(call(gate))
        await drain_while(drain, [running])
        return running.result()

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 503
    assert json.loads(body_of(sent))["error"]["type"] == "server_error"


def test_second_signal_cuts_the_drain_short() -> None:
    drain = Drain(timeout=60)
    gate = DrainGate(endless_stream, drain)

    async def scenario() -> float:
        running = asyncio.create_task(call(gate))
        await asyncio.sleep(0.05)
        drain.request()
        assert not drain.tick()
        drain.cut_short()
        return await drain_while(drain, [running])

    assert asyncio.run(scenario()) < 1.5
