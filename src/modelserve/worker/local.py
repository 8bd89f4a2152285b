"""A model built and run in the API process (`lifecycle.isolation: inline`), behind the same
interface as a worker process, so fronts and the registry take one path in both modes.

No isolation: a native fault takes the server down, and a failure is not restarted (the
worker-process mode's `watch` never fires here). It is for debugging and profiling in one
process, and the baseline the benchmarks divide the worker process's figures by.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelserve.config import ModelSpec
from modelserve.failures import WorkerDied
from modelserve.kinds import KINDS
from modelserve.kinds.wiring import runtime_of
from modelserve.model_files import release_freed_memory
from modelserve.worker.methods import Outbox, StreamOut, open_stream, runtime_method, start_call
from modelserve.worker.transport import Sinks, StreamSink, iterate


class LocalWorker:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.wiring = runtime_of(KINDS[spec.kind])
        self.runtime: Any = None
        self.exit_reason: str | None = None
        self.ready = False
        self._ids = itertools.count()
        self._sinks = Sinks()
        self._cancels: dict[int, Callable[[], None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox = Outbox(self._post)

    pid = None
    responsive = True
    longest_silence = 0.0
    sent_bytes = 0
    received_bytes = 0

    def rss_bytes(self) -> int:
        return 0  # it shares the server's process: the registry counts its estimate

    async def start(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        self._outbox.bind(self._loop)
        built = asyncio.ensure_future(asyncio.to_thread(self.wiring.build, self.spec))
        try:
            self.runtime = await asyncio.shield(built)
        except asyncio.CancelledError:  # the load was cancelled: close what the thread builds
            built.add_done_callback(_close_later)
            raise
        if self.wiring.step_hook is not None:
            self.wiring.step_hook(self.runtime, self._outbox.flush)
            self._outbox.flushed_by_runtime = True
        self.ready = True
        return self.wiring.describe(self.runtime)

    def watch(self, on_death: Callable[[str], None]) -> None:
        pass  # it ends only with the server

    def stop(self, timeout: float = 30.0) -> None:
        self.exit_reason = "the model was stopped"
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None
            release_freed_memory()

    def kill(self, reason: str | None = None) -> None:
        pass  # nothing to kill but ourselves

    async def acall(self, method: str, *args: Any) -> Any:
        self._check_running()
        return await start_call(runtime_method(self.runtime, self.wiring, method), args, None)

    def open(self, method: str, *args: Any, sink: StreamSink) -> int:
        self._check_running()
        stream_id = next(self._ids)
        self._sinks.add(stream_id, sink)
        out = StreamOut(self._outbox, stream_id, self._ended)
        try:
            fn = runtime_method(self.runtime, self.wiring, method)
            self._cancels[stream_id] = open_stream(fn, args, out, None)
        except BaseException:
            self._sinks.discard(stream_id)
            raise
        return stream_id

    def _check_running(self) -> None:
        if self.exit_reason is not None:
            raise WorkerDied(self.exit_reason)

    def cancel(self, stream_id: int) -> None:
        cancel = self._cancels.get(stream_id)
        if cancel is not None:
            cancel()

    def stream(self, method: str, *args: Any) -> AsyncIterator[Any]:
        return iterate(self, method, args)

    def _ended(self, stream_id: int) -> None:
        self._cancels.pop(stream_id, None)

    def _post(self, items: list[tuple[int, Any]]) -> None:
        """From the engine's thread after each step (or the loop): one wake-up of the loop
        for all of the step's items."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._sinks.deliver, items)


def _close_later(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is None:
        threading.Thread(target=done.result().close, daemon=True).start()
