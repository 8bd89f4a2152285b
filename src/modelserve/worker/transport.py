"""What the API process holds of a running model, wherever the model runs: a worker process
(worker/handle.py) or, with `lifecycle.isolation: inline`, this process (worker/local.py).
Fronts and the registry use only this, so both modes take the same path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from modelserve.worker.protocol import End

# A stream's consumer: called on the event loop with each item, and last with an `End`.
StreamSink = Callable[[Any], None]


class Worker(Protocol):
    exit_reason: str | None  # why it ended; None while it runs
    ready: bool
    longest_silence: float  # seconds, the most it went unheard while serving

    @property
    def pid(self) -> int | None: ...

    @property
    def responsive(self) -> bool: ...

    @property
    def sent_bytes(self) -> int: ...

    @property
    def received_bytes(self) -> int: ...

    def rss_bytes(self) -> int: ...

    async def start(self) -> dict[str, Any]:
        """Build the model; returns what its front needs to know of it (`describe`)."""

    def watch(self, on_death: Callable[[str], None]) -> None:
        """`on_death(reason)` once, on the event loop, when it ends without being stopped."""

    def stop(self, timeout: float = 30.0) -> None:
        """Close the model (blocking: call it from a thread)."""

    def kill(self, reason: str | None = None) -> None: ...

    async def acall(self, method: str, *args: Any) -> Any: ...

    def open(self, method: str, *args: Any, sink: StreamSink) -> int: ...

    def cancel(self, stream_id: int) -> None: ...

    def stream(self, method: str, *args: Any) -> AsyncIterator[Any]: ...


class Sinks:
    """The streams open on one worker, as the API process sees them: each stream's sink,
    fed on the event loop until its `End` (or its worker's death) arrives."""

    def __init__(self) -> None:
        self._sinks: dict[int, StreamSink] = {}

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._sinks

    def add(self, stream_id: int, sink: StreamSink) -> None:
        self._sinks[stream_id] = sink

    def discard(self, stream_id: int) -> None:
        self._sinks.pop(stream_id, None)

    def deliver(self, items: list[tuple[int, Any]]) -> None:
        for stream_id, item in items:
            sink = self._sinks.get(stream_id)
            if sink is None:
                continue
            if isinstance(item, End):
                del self._sinks[stream_id]
            sink(item)

    def end_all(self, error: BaseException) -> None:
        sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            sink(End(error))


async def iterate(worker: Worker, method: str, args: tuple[Any, ...]) -> AsyncIterator[Any]:
    """A stream's items as an async iterator (leaving it early cancels the stream)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stream_id = worker.open(method, *args, sink=queue.put_nowait)
    ended = False
    try:
        while True:
            item = await queue.get()
            if isinstance(item, End):
                ended = True
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        if not ended:
            worker.cancel(stream_id)
