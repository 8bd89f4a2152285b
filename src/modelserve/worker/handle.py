"""The API process's side of one worker process: start it, call it, stream from it, watch
that it stays alive, stop it, and notice when it dies.

Nothing here blocks the event loop on the worker: messages go out through a writer thread
(worker/pipe.py) and come in through a reader thread, and a worker that sends no heartbeat
for `liveness_timeout_seconds` is killed like a crashed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelserve.config import ModelSpec
from modelserve.config_sections import LifecycleSettings
from modelserve.failures import QueueFull, WorkerDied, WorkerLoadError, WorkerStalled
from modelserve.worker import child
from modelserve.worker.memory import rss_bytes
from modelserve.worker.pipe import PipeWriter
from modelserve.worker.protocol import (
    Call,
    Cancel,
    Fatal,
    Heartbeat,
    LoadFailed,
    Log,
    Open,
    Ready,
    Replies,
    Reply,
    Stop,
    Streamed,
    dumps,
    loads,
)
from modelserve.worker.transport import Sinks, StreamSink, iterate

logger = logging.getLogger(__name__)

# spawn, not fork: the API process runs threads (event loop, engines' readers) that a fork
# would copy mid-flight.
_CONTEXT = multiprocessing.get_context("spawn")

def heartbeat_interval(policy: LifecycleSettings) -> float:
    """A tenth of the liveness timeout, within [0.05, 1] s: a beat a second costs nothing
    (~20 us of CPU each way) and ten missed in a row are no scheduling hiccup."""
    return min(max(policy.liveness_timeout_seconds / 10, 0.05), 1.0)


class WorkerHandle:
    def __init__(self, spec: ModelSpec, policy: LifecycleSettings | None = None,
                 cpus: tuple[int, ...] | None = None, nice: int = 0) -> None:
        """`cpus`: the worker's CPU affinity (the CPU plan's); None: the server's. `nice`:
        added to the worker's nice value (its kind's `cpu.nice`)."""
        self.spec = spec
        self.policy = policy or LifecycleSettings()
        self._ids = itertools.count()
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._streams = Sinks()
        self._lock = threading.Lock()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exit_reason: str | None = None  # set once it is dead: no call starts after
        self._kill_reason: str | None = None
        self._fatal_reason: str | None = None
        self._on_death: Callable[[str], None] | None = None
        self._death_reported = False
        self.ready = False
        self._loaded = False  # it sent Ready (set by the thread that waits for it)
        self.last_heard = time.monotonic()  # any message from the worker is a sign of life
        self.longest_silence = 0.0  # since it was ready: what liveness_timeout must exceed
        self.received_bytes = 0
        interval = heartbeat_interval(self.policy)
        parent, child_end = _CONTEXT.Pipe()
        self._conn = parent
        self._child_end = child_end
        self._writer = PipeWriter(parent, f"worker-{spec.name}")
        self._process = _CONTEXT.Process(
            target=child.main,
            args=(spec, child_end,
                  child.WorkerOptions(os.getpid(), interval, _log_levels(), cpus, nice)),
            name=f"modelserve-worker-{spec.name}", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def rss_bytes(self) -> int:
        pid = self._process.pid
        return rss_bytes(pid) if pid is not None and self.exit_reason is None else 0

    @property
    def sent_bytes(self) -> int:
        return self._writer.sent_bytes

    @property
    def responsive(self) -> bool:
        """It was heard from within a few heartbeats."""
        silent = time.monotonic() - self.last_heard
        return silent < max(4 * heartbeat_interval(self.policy), 2.0)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Spawn the worker and wait until its runtime is built; returns its `Ready.info`.
        A worker silent for `load_liveness_timeout_seconds` meanwhile is killed."""
        self._loop = asyncio.get_running_loop()
        # From the loop's own thread: PR_SET_PDEATHSIG fires when the thread that started
        # the worker ends, and this one lives as long as the server.
        self._process.start()
        self._child_end.close()  # so the worker's death shows here as EOF
        self.last_heard = time.monotonic()
        self._schedule_liveness_check()
        try:
            info = await asyncio.to_thread(self._wait_ready)
        except BaseException:
            self.kill()
            if self._loaded:  # it was ready as the load was cancelled: nobody reads its pipe
                self._conn.close()
            raise
        self.ready = True
        self.last_heard = time.monotonic()
        self._writer.start()
        threading.Thread(target=self._read, name=f"worker-{self.spec.name}",
                         daemon=True).start()
        return info

    def _wait_ready(self) -> dict[str, Any]:
        """In a thread, until the worker is ready; on a failure this thread closes the pipe
        (it is the one reading it: a close from another thread could race its read)."""
        try:
            while True:
                try:
                    message = loads(self._conn.recv_bytes())
                except (EOFError, OSError):
                    self._process.join(timeout=5)
                    raise WorkerLoadError(self._why_dead(loading=True)) from None
                self.last_heard = time.monotonic()
                if isinstance(message, Log):
                    _log(message)
                elif isinstance(message, LoadFailed):
                    self._process.join(timeout=5)
                    raise WorkerLoadError(message.message)
                elif isinstance(message, Ready):
                    self._loaded = True
                    return message.info
        finally:
            if not self._loaded:
                self._conn.close()

    def watch(self, on_death: Callable[[str], None]) -> None:
        """Call `on_death(reason)` on the event loop once, when the worker dies without being
        stopped: at once if it already has (even during the last steps of its load)."""
        self._on_death = on_death
        if self.exit_reason is not None and self._loop is not None:
            self._loop.call_soon(self._report_death, self.exit_reason)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to close its runtime and exit; kill it if it will not (blocking:
        call it from a thread). An unresponsive worker is killed at once."""
        self._stopping = True
        if self._process.is_alive() and self.ready and self.responsive:
            self._writer.put(dumps(Stop()), bounded=False)
            self._process.join(timeout)
        self.kill()
        if self._process.pid is not None:
            self._process.join(timeout=10)
        else:  # never started: no thread reads the pipe, it is ours to close
            self._conn.close()

    def kill(self, reason: str | None = None) -> None:
        """SIGKILL the worker (never blocks); the reader then fails what is in flight.
        `reason` is what they and the registry are told."""
        if reason is not None and self._kill_reason is None:
            self._kill_reason = reason
        if reason is None:
            self._stopping = True
        if self._process.pid is not None and self._process.is_alive():
            self._process.kill()

    def _schedule_liveness_check(self) -> None:
        assert self._loop is not None
        self._loop.call_later(heartbeat_interval(self.policy), self._check_liveness)

    def _check_liveness(self) -> None:
        if self.exit_reason is not None or self._stopping:
            return
        timeout = self.policy.liveness_timeout_seconds if self.ready \
            else self.policy.load_liveness_timeout_seconds
        silent = time.monotonic() - self.last_heard
        if silent > timeout:
            logger.error("model %s: its worker sent no heartbeat for %.1fs: killing it",
                         self.spec.name, silent)
            self.kill(f"stopped answering (no heartbeat for {silent:.1f}s, liveness timeout "
                      f"{timeout:g}s) and was killed")
            return
        self._schedule_liveness_check()

    # -- calls and streams -------------------------------------------------------------------

    def _send_work(self, message: Call | Open) -> None:
        if not self._writer.put(dumps(message)):
            if self.responsive:
                raise QueueFull()
            raise WorkerStalled(f"its worker process is not answering ({self._writer.backlog} "
                                "messages wait for it)")

    async def acall(self, method: str, *args: Any) -> Any:
        """Call and await; cancelling the awaiting task cancels the work in the worker.
        Raises QueueFull / WorkerStalled when the worker's queue is full, WorkerDied if it
        dies meanwhile."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call_id = next(self._ids)
        with self._lock:
            if self.exit_reason is not None:
                raise WorkerDied(self.exit_reason)
            self._calls[call_id] = future
        try:
            self._send_work(Call(call_id, method, args))
        except BaseException:
            with self._lock:
                self._calls.pop(call_id, None)
            raise
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                self._calls.pop(call_id, None)
            if self.exit_reason is None:
                self._writer.put(dumps(Cancel(call_id)), bounded=False)
            raise

    def open(self, method: str, *args: Any, sink: StreamSink) -> int:
        """Start a stream; `sink` gets its items on the event loop, then an `End` (with a
        WorkerDied error if the worker dies). Raises like `acall` when it cannot start."""
        stream_id = next(self._ids)
        with self._lock:
            if self.exit_reason is not None:
                raise WorkerDied(self.exit_reason)
            self._streams.add(stream_id, sink)
        try:
            self._send_work(Open(stream_id, method, args))
        except BaseException:
            with self._lock:
                self._streams.discard(stream_id)
            raise
        return stream_id

    def cancel(self, stream_id: int) -> None:
        """Stop a stream; its `End` still reaches its sink."""
        with self._lock:
            if stream_id not in self._streams:
                return
        if self.exit_reason is None:
            self._writer.put(dumps(Cancel(stream_id)), bounded=False)

    def stream(self, method: str, *args: Any) -> AsyncIterator[Any]:
        """A stream's items as an async iterator (closing it early cancels the stream)."""
        return iterate(self, method, args)

    # -- the reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                try:
                    data = self._conn.recv_bytes()
                except (EOFError, OSError, ValueError):
                    break
                now = time.monotonic()
                self.longest_silence = max(self.longest_silence, now - self.last_heard)
                self.last_heard = now
                self.received_bytes += len(data)
                try:
                    self._handle(loads(data))
                except Exception:  # one bad message (a log record, say) ends nothing
                    logger.exception("model %s: a message from its worker failed",
                                     self.spec.name)
        finally:
            # This thread alone closes the pipe, once the writer is done with it (a close
            # racing a write could hit a reused descriptor).
            self._writer.close(wait=5.0)
            self._conn.close()
            self._process.join(timeout=5)
            self._died()

    def _handle(self, message: object) -> None:
        if isinstance(message, Streamed):
            self._post(self._streams.deliver, message.items)
        elif isinstance(message, Replies):
            self._post(_settle_all, self._take_calls(message.items))
        elif isinstance(message, Log):
            _log(message)
        elif isinstance(message, Fatal):
            self._fatal_reason = message.reason
        elif not isinstance(message, Heartbeat):
            logger.warning("model %s: unexpected message %r", self.spec.name, message)

    def _take_calls(self, replies: list[Reply]) -> list[tuple[asyncio.Future[Any], Reply]]:
        with self._lock:
            waiting = [(self._calls.pop(r.id, None), r) for r in replies]
        return [(future, reply) for future, reply in waiting if future is not None]

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _died(self) -> None:
        reason = self._why_dead()
        with self._lock:
            self.exit_reason = reason  # no call starts from now on
            calls = list(self._calls)
        self._post(_settle_all, self._take_calls([Reply(c, None, WorkerDied(reason))
                                                  for c in calls]))
        self._post(self._fail_streams, reason)

    def _fail_streams(self, reason: str) -> None:
        self._streams.end_all(WorkerDied(reason))
        self._report_death(reason)

    def _report_death(self, reason: str) -> None:
        if self._stopping or self._on_death is None or self._death_reported:
            return
        self._death_reported = True
        logger.error("model %s: %s", self.spec.name, reason)
        self._on_death(reason)

    def _why_dead(self, loading: bool = False) -> str:
        """What ended the worker, as its requests and /admin/models are told."""
        if self._kill_reason is not None:
            cause = self._kill_reason
        elif self._fatal_reason is not None:
            cause = f"failed: {self._fatal_reason}"
        elif self._stopping:
            cause = "was stopped"
        else:
            cause = _exit_cause(self._process.exitcode)
            return f"its worker process died{' while loading' if loading else ''}: {cause}"
        return f"its worker process {cause}{' while loading' if loading else ''}"


def _exit_cause(code: int | None) -> str:
    if code is None:
        return "it closed its pipe"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory, or killed)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with status {code}"


def _settle_all(settled: list[tuple[asyncio.Future[Any], Reply]]) -> None:
    for future, reply in settled:
        if future.done():
            continue  # cancelled meanwhile
        if reply.error is not None:
            future.set_exception(reply.error)
        else:
            future.set_result(reply.value)


def _log_levels() -> dict[str, int]:
    """This process's levels for the loggers a worker logs to, so it sends what is shown."""
    return {name: logging.getLogger(name).getEffectiveLevel() for name in ("", "modelserve")}


def _log(message: Log) -> None:
    record = message.record
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
