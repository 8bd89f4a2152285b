"""Graceful shutdown, the HTTP side.

After SIGTERM (`Drain.request`, from the server's signal handler) new requests are refused with
503 + Retry-After and `Connection: close` (so clients and balancers go elsewhere), `/ready`
answers 503, and the requests in flight get until the drain deadline to finish. Whatever is
still running then is ended cleanly: a stream gets an error event and `data: [DONE]`, a request
not yet answered gets a 503 body. The server process (`modelserve.server`) exits once nothing
is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.errors import APIError, error_response, shape_for

logger = logging.getLogger(__name__)
# Served while draining: probes and scrapes (`/ready` answers 503 by itself).
ALWAYS_SERVED = frozenset({"/health", "/ready", "/metrics"})
RETRY_AFTER_SECONDS = 2
# After a second signal, how long requests get to write their last event before the exit.
CUT_SHORT_GRACE_SECONDS = 1.0


def shutting_down() -> APIError:
    return APIError(503, "The server is shutting down. Please retry; another replica will "
                    "answer.", type="server_error", code="server_shutting_down",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"})


class Drain:
    """The drain's state: requested or not, its deadline, the requests in flight."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.draining = False
        self._requested_at = 0.0
        self._cut_short_at: float | None = None
        self._deadline: float | None = None  # event-loop time, once enforced
        self._requests: set[asyncio.Timeout] = set()

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    def request(self) -> None:
        """Begin draining. Safe in a signal handler: it only sets flags; `tick` does the
        event-loop work."""
        if not self.draining:
            self.draining = True
            self._requested_at = time.monotonic()

    def cut_short(self) -> None:
        """A second signal: end what is in flight now (cleanly), then exit."""
        self.request()
        self._cut_short_at = time.monotonic()
        self._deadline = None

    def tick(self) -> bool:
        """Called on the event loop every 0.1 s or so: puts the deadline on the requests in
        flight once draining; True when the server may exit (nothing left in flight)."""
        if not self.draining:
            return False
        if self._deadline is None:  # (logged here, not in the signal handler)
            ends = self._requested_at + self.timeout
            if self._cut_short_at is not None:
                ends = self._cut_short_at
                logger.warning("second signal: ending %d requests in flight now",
                               self.in_flight)
            else:
                logger.warning("shutting down: refusing new requests; %d in flight get up to "
                               "%g s", self.in_flight, self.timeout)
            self._deadline = asyncio.get_running_loop().time() + max(ends - time.monotonic(), 0)
            for request in self._requests:
                self._bound(request)
        if self._cut_short_at is not None and \
                time.monotonic() - self._cut_short_at > CUT_SHORT_GRACE_SECONDS:
            return True
        return not self._requests

    def _bound(self, request: asyncio.Timeout) -> None:
        assert self._deadline is not None
        when = request.when()
        if request.expired():  # already being ended
            return
        if when is None or when > self._deadline:
            request.reschedule(self._deadline)

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[asyncio.Timeout]:
        """One request in flight: its work, cut off (TimeoutError) at the drain deadline."""
        async with asyncio.timeout(None) as bound:
            self._requests.add(bound)
            if self._deadline is not None:
                self._bound(bound)
            try:
                yield bound
            finally:
                self._requests.discard(bound)


@dataclass
class _ResponseState:
    started: bool = False
    event_stream: bool = False
    complete: bool = False


class DrainGate:
    """ASGI middleware: refuses new requests while draining and ends, cleanly, those still
    running at the drain deadline."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.drain.draining and scope["path"] not in ALWAYS_SERVED:
            return await _answer(scope, receive, send, shutting_down())
        state = _ResponseState()

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.started = True
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                state.event_stream = content_type.startswith((b"text/event-stream",
                                                              b"application/x-ndjson"))
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state.complete = True
            await send(message)

        bound: asyncio.Timeout | None = None
        try:
            async with self.drain.track() as bound:
                await self.app(scope, receive, send_tracked)
        except TimeoutError:
            if bound is None or not bound.expired():
                raise
            await self._end(scope, receive, send, state)

    @staticmethod
    async def _end(scope: Scope, receive: Receive, send: Send, state: _ResponseState) -> None:
        """The drain deadline passed with this request still running."""
        if state.complete:
            return
        if not state.started:
            await _answer(scope, receive, send, shutting_down())
            return
        last = b""
        if state.event_stream:  # the client's stream parser sees an error, then the end
            last = shape_for(scope["path"]).stream_end(shutting_down()).encode()
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "http.response.body", "body": last, "more_body": False})


async def _answer(scope: Scope, receive: Receive, send: Send, err: APIError) -> None:
    with contextlib.suppress(Exception):
        await error_response(err, scope["path"])(scope, receive, send)
