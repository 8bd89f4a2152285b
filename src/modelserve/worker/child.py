"""The worker process: builds one model's runtime, then serves the API process's messages.

The main thread runs an asyncio loop (coroutine methods such as `embed` and `generate` run
there as tasks; blocking ones in a thread pool). A reader thread feeds it from the pipe; when
the pipe closes (the API process is gone, even by `kill -9`) the worker exits too.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import inspect
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from modelserve.config import ModelSpec
from modelserve.engine.scheduler import QueueFull
from modelserve.engine.sequence import StepOutput
from modelserve.kinds import KINDS
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
    portable_error,
)

logger = logging.getLogger(__name__)


def main(spec: ModelSpec, conn: Connection, log_levels: dict[str, int]) -> None:
    """The worker's entry point (multiprocessing's target)."""
    faulthandler.enable()  # a native fault prints the Python stack before the worker dies
    send_lock = threading.Lock()
    for name, level in log_levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().addHandler(_ForwardLogs(conn, send_lock))
    # Ctrl-C reaches the whole process group; the API process drains, then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kind = KINDS[spec.kind]
    try:
        runtime = kind.build(spec)
    except BaseException as exc:
        with send_lock:
            conn.send_bytes(dumps(LoadFailed(str(exc) or type(exc).__name__)))
        conn.close()
        return
    Worker(spec, runtime, conn, send_lock).serve()
    os._exit(0)  # library threads (ORT, OpenMP) must not keep a stopped worker alive


class _ForwardLogs(logging.Handler):
    """Sends each record to the API process, which logs it as its own."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        super().__init__()
        self._conn = conn
        self._lock = lock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args, record.exc_info = record.getMessage(), None, None
            record.processName = f"worker {record.processName}"
            data = dumps(Log(record))
            with self._lock:
                self._conn.send_bytes(data)
        except Exception:  # logging must never take the worker down
            self.handleError(record)


class Outbox:
    """Stream outputs gathered during one engine step and sent as one message."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._items: list[tuple[int, StepOutput]] = []

    def add(self, stream_id: int, out: StepOutput) -> None:
        with self._lock:
            self._items.append((stream_id, out))

    def flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        if items:
            self._send(Outputs(items))


class Worker:
    def __init__(self, spec: ModelSpec, runtime: Any, conn: Connection,
                 send_lock: threading.Lock) -> None:
        self.spec = spec
        self.runtime = runtime
        self.kind = KINDS[spec.kind]
        self._conn = conn
        self._send_lock = send_lock
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="worker-call")
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._streams: dict[int, int] = {}  # stream id -> engine sequence id
        self._replies: list[Reply] = []
        self.outbox = Outbox(self.send)
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, message: object) -> None:
        data = dumps(message)
        # The API process may be gone: the reader sees EOF and stops us.
        with self._send_lock, contextlib.suppress(OSError):
            self._conn.send_bytes(data)

    def serve(self) -> None:
        engine = getattr(self.runtime, "engine", None)
        if engine is not None:  # one message per engine step for all of its streams
            engine.after_step = self.outbox.flush
        self.send(Ready(self.kind.describe(self.runtime)))
        asyncio.run(self._serve())
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        threading.Thread(target=self._read, name="worker-reader", daemon=True).start()
        await self._stopped.wait()
        for task in self._tasks.values():
            task.cancel()

    def _read(self) -> None:
        assert self._loop is not None and self._stopped is not None
        while True:
            try:
                message = loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                break
            if isinstance(message, Stop):
                break
            self._loop.call_soon_threadsafe(self._dispatch, message)
        self._loop.call_soon_threadsafe(self._stopped.set)

    def _dispatch(self, message: object) -> None:
        match message:
            case Call(id=call_id, method=method, args=args):
                self._start_call(call_id, method, args)
            case Cancel(id=call_id):
                task = self._tasks.get(call_id)
                if task is not None:
                    task.cancel()
            case Submit(id=stream_id, prompt=prompt, params=params, images=images):
                self._submit(stream_id, prompt, params, images)
            case Abort(id=stream_id):
                seq_id = self._streams.pop(stream_id, None)
                if seq_id is not None:
                    self.runtime.abort(seq_id)

    def _start_call(self, call_id: int, method: str, args: tuple[Any, ...]) -> None:
        if method == "stats":
            fn: Any = lambda: self.kind.stats(self.runtime)  # noqa: E731
        else:
            fn = getattr(self.runtime, method)
        work = fn(*args) if inspect.iscoroutinefunction(fn) else \
            asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        task = asyncio.ensure_future(work)
        self._tasks[call_id] = task
        task.add_done_callback(lambda done: self._reply(call_id, done))

    def _reply(self, call_id: int, done: asyncio.Future[Any]) -> None:
        self._tasks.pop(call_id, None)
        if done.cancelled():
            return  # the caller cancelled it and does not wait for an answer
        error = done.exception()
        self._replies.append(Reply(call_id, None, portable_error(error)) if error is not None
                             else Reply(call_id, done.result()))
        if len(self._replies) == 1:  # after every reply this turn of the loop settles
            asyncio.get_running_loop().call_soon(self._send_replies)

    def _send_replies(self) -> None:
        replies, self._replies = self._replies, []
        try:
            self.send(Replies(replies))
        except Exception:  # a value that does not pickle: its caller gets an error, not a hang
            logger.exception("could not send replies")
            self.send(Replies([Reply(r.id, None, RuntimeError("the worker could not send the "
                                                                "result")) for r in replies]))

    def _submit(self, stream_id: int, prompt: list[int], params: Any, images: Any) -> None:
        def sink(out: StepOutput) -> None:
            if out.finish_reason is not None:
                self._streams.pop(stream_id, None)
            self.outbox.add(stream_id, out)

        try:
            self._streams[stream_id] = self.runtime.start_sequence(prompt, params, images, sink)
        except Exception as exc:
            code = "queue_full" if isinstance(exc, QueueFull) else str(exc)
            self.outbox.add(stream_id, StepOutput(finish_reason="error", error=code))
            self.outbox.flush()
