"""The worker process: builds one model's runtime, then serves the API process's messages.

The main thread runs an asyncio loop (coroutine methods such as `embed` run there as tasks;
blocking ones in a thread pool). A reader thread feeds it from the pipe; when the pipe closes
(the API process is gone, even by `kill -9`) the worker exits, and the kernel kills it if the
API process dies first (`PR_SET_PDEATHSIG`, set before anything loads).

Any failure the worker cannot serve on (an exception that ends one of its threads: the
engine loop, the embeddings batcher) ends the process: what is in flight fails with a 503 on
the API side and the registry restarts the model. A worker that stops answering is killed
by the API process after `liveness_timeout_seconds` without a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from modelserve.config import ModelSpec
from modelserve.failures import WorkerDied
from modelserve.kinds import KINDS, load_plugins
from modelserve.kinds.wiring import KindRuntime, runtime_of
from modelserve.worker.methods import Outbox, StreamOut, open_stream, runtime_method, start_call
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
    portable_error,
)

logger = logging.getLogger(__name__)

FATAL_EXIT = 70  # EX_SOFTWARE: the worker ended itself after a failure it cannot serve on


@dataclass(frozen=True)
class WorkerOptions:
    """What the API process tells a new worker besides its model's spec."""

    parent_pid: int
    heartbeat_interval: float
    log_levels: dict[str, int]
    cpus: tuple[int, ...] | None = None  # its CPU affinity (the CPU plan); None: inherited
    nice: int = 0  # added to its nice value (`cpu.nice` of its kind): a lower CPU priority


def main(spec: ModelSpec, conn: Connection, options: WorkerOptions) -> None:
    """The worker's entry point (multiprocessing's target)."""
    _die_with_parent(options.parent_pid)
    # Before any library starts its threads: they inherit it (Linux; macOS has no affinity).
    if options.cpus is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):  # a CPU gone offline since: run where we may
            os.sched_setaffinity(0, options.cpus)
    if options.nice > 0:  # raising one's own nice value needs no privilege; lowering would
        with contextlib.suppress(OSError):
            os.nice(options.nice)
    faulthandler.enable()  # a native fault prints the Python stack before the worker dies
    sender = _Sender(conn)
    for name, level in options.log_levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().addHandler(_ForwardLogs(sender))
    # Ctrl-C reaches the whole process group; the API process drains, then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loading = threading.Event()
    threading.Thread(target=_beat_while, args=(sender, loading, options.heartbeat_interval),
                     name="worker-load-heartbeat", daemon=True).start()
    try:
        load_plugins()  # an import error here is the load's error, said in full
        wiring = runtime_of(KINDS[spec.kind])
        runtime = wiring.build(spec)
    except BaseException as exc:
        loading.set()
        sender.send(LoadFailed(str(exc) or type(exc).__name__))
        conn.close()
        return
    finally:
        loading.set()
    Worker(wiring, runtime, sender, conn, options.heartbeat_interval).serve()
    os._exit(0)  # library threads (ORT, OpenMP) must not keep a stopped worker alive


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when the API process dies (Linux), so a worker
    that is still loading, and not yet reading its pipe, does not outlive a `kill -9`."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # it died before the prctl took effect
        os._exit(1)


def _beat_while(sender: _Sender, done: threading.Event, interval: float) -> None:
    while not done.wait(interval):
        sender.send(Heartbeat())


class _Sender:
    """The worker's end of the pipe, shared by its threads. If the API process is gone, the
    reader sees EOF and stops the worker; a send meanwhile is dropped."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        data = dumps(message)
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(data)


class _ForwardLogs(logging.Handler):
    """Sends each record to the API process, which logs it as its own."""

    def __init__(self, sender: _Sender) -> None:
        super().__init__()
        self._sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args, record.exc_info = record.getMessage(), None, None
            record.processName = f"worker {record.processName}"
            self._sender.send(Log(record))
        except Exception:  # logging must never take the worker down
            self.handleError(record)


class Worker:
    def __init__(self, wiring: KindRuntime[Any], runtime: Any, sender: _Sender,
                 conn: Connection, heartbeat_interval: float) -> None:
        self.wiring = wiring
        self.runtime = runtime
        self._sender = sender
        self._conn = conn
        self._heartbeat_interval = heartbeat_interval
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="worker-call")
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._cancelled: set[int] = set()  # calls the API process cancelled
        self._streams: dict[int, tuple[StreamOut, Callable[[], None]]] = {}  # out, cancel
        self._replies: list[Reply] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self.outbox = Outbox(lambda items: self._sender.send(Streamed(items)))

    def serve(self) -> None:
        threading.excepthook = self._thread_failed
        if self.wiring.step_hook is not None:  # one message per engine step, for all streams
            self.wiring.step_hook(self.runtime, self.outbox.flush)
            self.outbox.flushed_by_runtime = True
        self._sender.send(Ready(self.wiring.describe(self.runtime)))
        asyncio.run(self._serve())
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.outbox.bind(self._loop)
        self._stopped = asyncio.Event()
        threading.Thread(target=self._read, name="worker-reader", daemon=True).start()
        beats = asyncio.create_task(self._beat())
        await self._stopped.wait()
        beats.cancel()
        # Stopped (an unload past its grace, a shutdown): what still runs ends as a 503, not
        # as a client's cancel; the runtime's close stops the work itself.
        for out, _ in list(self._streams.values()):
            out.end(WorkerDied("its worker process was stopped"))
        self.outbox.flush()
        for task in self._calls.values():
            task.cancel()

    async def _beat(self) -> None:
        """From the loop, not a thread: a heartbeat also says the loop still turns."""
        while True:
            self._sender.send(Heartbeat())
            await asyncio.sleep(self._heartbeat_interval)

    def _read(self) -> None:
        assert self._loop is not None and self._stopped is not None
        try:
            while True:
                try:
                    message = loads(self._conn.recv_bytes())
                except (EOFError, OSError):
                    break
                if isinstance(message, Stop):
                    break
                self._loop.call_soon_threadsafe(self._dispatch, message)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stopped.set)

    def _thread_failed(self, args: threading.ExceptHookArgs) -> None:
        """A thread ended by an exception (the engine loop, the batcher): the model cannot
        serve any more. Say why, then exit; the API process fails what is in flight and the
        registry restarts the model."""
        name = args.thread.name if args.thread is not None else "a thread"
        reason = f"the worker's {name} thread failed: {type(args.exc_value).__name__}: " \
                 f"{args.exc_value}"
        logger.error("%s", reason, exc_info=args.exc_value)
        self.outbox.flush()
        self._sender.send(Fatal(reason))
        os._exit(FATAL_EXIT)

    # -- messages ----------------------------------------------------------------------------

    def _dispatch(self, message: object) -> None:
        match message:
            case Call(id=call_id, method=method, args=args):
                self._start_call(call_id, method, args)
            case Open(id=stream_id, method=method, args=args):
                self._open(stream_id, method, args)
            case Cancel(id=some_id):
                task = self._calls.get(some_id)
                if task is not None:
                    self._cancelled.add(some_id)
                    task.cancel()
                stream = self._streams.get(some_id)
                if stream is not None:
                    stream[1]()

    def _start_call(self, call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            work = start_call(runtime_method(self.runtime, self.wiring, method), args,
                              self._pool)
        except Exception as exc:  # a call that cannot start still gets its answer
            self._add_reply(Reply(call_id, None, portable_error(exc)))
            return
        task = asyncio.ensure_future(work)
        self._calls[call_id] = task
        task.add_done_callback(lambda done: self._reply(call_id, done))

    def _reply(self, call_id: int, done: asyncio.Future[Any]) -> None:
        self._calls.pop(call_id, None)
        if call_id in self._cancelled:
            self._cancelled.discard(call_id)
            return  # the caller cancelled it and does not wait for an answer
        if done.cancelled():  # by the runtime itself: its caller still gets an answer
            self._add_reply(Reply(call_id, None, RuntimeError("the call was cancelled")))
            return
        error = done.exception()
        self._add_reply(Reply(call_id, None, portable_error(error)) if error is not None
                        else Reply(call_id, done.result()))

    def _add_reply(self, reply: Reply) -> None:
        self._replies.append(reply)
        if len(self._replies) == 1:  # after every reply this turn of the loop settles
            asyncio.get_running_loop().call_soon(self._send_replies)

    def _send_replies(self) -> None:
        replies, self._replies = self._replies, []
        try:
            self._sender.send(Replies(replies))
        except Exception:  # a value that does not pickle: its caller gets an error, not a hang
            logger.exception("could not send replies")
            for reply in replies:  # one at a time: only the bad one fails
                try:
                    self._sender.send(Replies([reply]))
                except Exception:
                    self._sender.send(Replies([Reply(reply.id, None, RuntimeError(
                        "the worker could not send the result"))]))

    def _open(self, stream_id: int, method: str, args: tuple[Any, ...]) -> None:
        out = StreamOut(self.outbox, stream_id, self._ended)
        try:
            fn = runtime_method(self.runtime, self.wiring, method)
            self._streams[stream_id] = (out, open_stream(fn, args, out, self._pool))
        except Exception as exc:  # refused at the start (QueueFull, bad arguments)
            out.end(portable_error(exc))
            self.outbox.flush()  # an idle engine would not flush it

    def _ended(self, stream_id: int) -> None:
        """From any thread, once a stream's End is queued: forget it (on the loop, after
        `_open` has recorded it)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._streams.pop, stream_id, None)
