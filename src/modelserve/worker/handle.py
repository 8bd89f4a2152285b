"""The API process's side of one worker process: start it, call it, stream from it, stop it,
and notice when it dies."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from typing import Any

from modelserve.config import ModelSpec
from modelserve.engine.sequence import ImageSpan, SamplingParams, StepOutput
from modelserve.worker import child
from modelserve.worker.errors import WorkerDied, WorkerLoadError
from modelserve.worker.memory import rss_bytes
from modelserve.worker.protocol import (
    Abort,
    Call,
    Cancel,
    LoadFailed,
    Log,
    Outputs,
    Ready,
    Replies,
    Reply,
    Stop,
    Submit,
    dumps,
    loads,
)

logger = logging.getLogger(__name__)

# spawn, not fork: the API process runs threads (event loop, engines' readers) that a fork
# would copy mid-flight.
_CONTEXT = multiprocessing.get_context("spawn")


StreamSink = Callable[[StepOutput], None]


class WorkerHandle:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._ids = itertools.count()
        # Blocking callers wait on a concurrent future (settled by the reader thread), async
        # ones on an asyncio future (settled on the loop, one wake-up per message).
        self._calls: dict[int, concurrent.futures.Future[Any] | asyncio.Future[Any]] = {}
        self._streams: dict[int, StreamSink] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exit_reason: str | None = None
        # Called on the event loop once, when a ready worker dies without being stopped.
        self.on_death: Callable[[str], None] | None = None
        parent, child_end = _CONTEXT.Pipe()
        self._conn = parent
        self._process = _CONTEXT.Process(
            target=child.main, args=(spec, child_end, _log_levels()),
            name=f"modelserve-worker-{spec.name}", daemon=True)
        self._child_end = child_end

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def rss_bytes(self) -> int:
        pid = self._process.pid
        return rss_bytes(pid) if pid is not None and self.exit_reason is None else 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Spawn the worker and wait until its runtime is built; returns its `Ready.info`."""
        self._loop = asyncio.get_running_loop()
        self._process.start()
        self._child_end.close()  # so the worker's death shows here as EOF
        try:
            info = await asyncio.to_thread(self._wait_ready)
        except BaseException:
            self.kill()
            raise
        threading.Thread(target=self._read, name=f"worker-{self.spec.name}",
                         daemon=True).start()
        return info

    def _wait_ready(self) -> dict[str, Any]:
        while True:
            try:
                message = loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                self._process.join(timeout=5)
                raise WorkerLoadError(f"its worker process died while loading: "
                                      f"{self._death()}") from None
            if not isinstance(message, Log):
                break
            _log(message)
        if isinstance(message, LoadFailed):
            self._process.join(timeout=5)
            raise WorkerLoadError(message.message)
        assert isinstance(message, Ready)
        return message.info

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to close its runtime and exit; kill it if it will not (blocking)."""
        self._stopping = True
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._send(Stop())
            self._process.join(timeout)
        self.kill()

    def kill(self) -> None:
        self._stopping = True
        if self._process.is_alive():
            self._process.kill()
        if self._process.pid is not None:
            self._process.join(timeout=10)
        self._conn.close()

    # -- calls and streams -------------------------------------------------------------------

    def _start_call(self, future: concurrent.futures.Future[Any] | asyncio.Future[Any],
                    method: str, args: tuple[Any, ...]) -> int:
        call_id = next(self._ids)
        with self._lock:
            if self.exit_reason is not None:
                raise WorkerDied(self.exit_reason)
            self._calls[call_id] = future
        self._send(Call(call_id, method, args))
        return call_id

    def call_blocking(self, method: str, *args: Any) -> Any:
        """Call from any thread but the event loop's, and wait for the answer."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._start_call(future, method, args)
        return future.result()

    async def acall(self, method: str, *args: Any) -> Any:
        """Call and await; cancelling the awaiting task cancels the work in the worker."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call_id = self._start_call(future, method, args)
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                self._calls.pop(call_id, None)
            if self.exit_reason is None:
                self._send(Cancel(call_id))
            raise

    def open_stream(self, prompt: list[int], params: SamplingParams, images: list[ImageSpan],
                    sink: StreamSink) -> int:
        """Start a sequence; `sink` gets its outputs on the event loop, the last one with a
        finish_reason (an error one if the worker dies)."""
        stream_id = next(self._ids)
        with self._lock:
            if self.exit_reason is not None:
                raise WorkerDied(self.exit_reason)
            self._streams[stream_id] = sink
        self._send(Submit(stream_id, prompt, params, images))
        return stream_id

    def abort(self, stream_id: int) -> None:
        """The stream's last output (finish_reason "cancelled") still reaches its sink."""
        with self._lock:
            if stream_id not in self._streams:
                return
        if self.exit_reason is None:
            self._send(Abort(stream_id))

    def _send(self, message: object) -> None:
        data = dumps(message)
        # The worker may be gone: the reader settles everything in flight.
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(data)

    # -- the reader thread ---------------------------------------------------------------

    def _read(self) -> None:
        assert self._loop is not None
        while True:
            try:
                message = loads(self._conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                break
            if isinstance(message, Replies):
                self._settle_replies(message.items)
            elif isinstance(message, Outputs):
                self._post(self._deliver, message.items)
            elif isinstance(message, Log):
                _log(message)
        self._process.join(timeout=5)
        self._died()

    def _settle_replies(self, replies: list[Reply]) -> None:
        on_loop: list[tuple[asyncio.Future[Any], Reply]] = []
        with self._lock:
            waiting = [(self._calls.pop(r.id, None), r) for r in replies]
        for future, reply in waiting:
            if isinstance(future, asyncio.Future):
                on_loop.append((future, reply))
            elif future is not None:
                _settle(future, reply.value, reply.error)
        if on_loop:
            self._post(_settle_all, on_loop)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _deliver(self, items: list[tuple[int, StepOutput]]) -> None:
        for stream_id, out in items:
            sink = self._streams.get(stream_id)
            if sink is None:
                continue
            if out.finish_reason is not None:
                self._streams.pop(stream_id, None)
            sink(out)

    def _died(self) -> None:
        reason = "its worker process was stopped" if self._stopping else \
            f"its worker process died: {self._death()}"
        with self._lock:
            self.exit_reason = reason  # no call starts from now on
            calls = list(self._calls)
        self._settle_replies([Reply(call_id, None, WorkerDied(reason)) for call_id in calls])
        self._post(self._fail_streams, reason)

    def _fail_streams(self, reason: str) -> None:
        streams, self._streams = self._streams, {}
        for sink in streams.values():
            sink(StepOutput(finish_reason="error", error=reason, unavailable=True))
        if not self._stopping and self.on_death is not None:
            logger.error("model %s: %s", self.spec.name, reason)
            self.on_death(reason)

    def _death(self) -> str:
        code = self._process.exitcode
        if code is None:
            return "it closed its pipe"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory, or killed)" if name == "SIGKILL" else ""
            return f"killed by {name}{hint}"
        return f"exited with status {code}"


def _settle(future: concurrent.futures.Future[Any] | asyncio.Future[Any], value: Any,
            error: BaseException | None) -> None:
    if future.done():
        return  # cancelled meanwhile
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Reply]]) -> None:
    for future, reply in settled:
        _settle(future, reply.value, reply.error)


def _log_levels() -> dict[str, int]:
    """This process's levels for the loggers a worker logs to, so it sends what is shown."""
    return {name: logging.getLogger(name).getEffectiveLevel() for name in ("", "modelserve")}


def _log(message: Log) -> None:
    record = message.record
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
