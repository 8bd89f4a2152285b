"""How a runtime's methods are run for the API process, in a worker process (worker/child.py)
or inline (worker/local.py): calls, and streams with where their items go.

A call runs a coroutine method as a task, any other in a thread. A stream method is one of
- an async generator (run as a task), or a plain generator (iterated in a thread);
- a function taking `out=` (a StreamOut) that pushes items from wherever it runs (the chat
  engine's thread) and returns the stream's cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, cast

from modelserve.kinds.wiring import KindRuntime
from modelserve.worker.protocol import End, portable_error


def runtime_method(runtime: Any, wiring: KindRuntime[Any], method: str) -> Any:
    """The callable a Call or Open names ("stats" and "set_threads" are the kind's, the
    rest the runtime's)."""
    if method == "stats":
        return lambda: wiring.stats(runtime)
    if method == "set_threads":  # the CPU plan changed (cpu_apply.py)
        set_threads = wiring.set_threads
        return lambda n: set_threads is not None and set_threads(runtime, n)
    fn = getattr(runtime, method, None)
    if method.startswith("_") or not callable(fn):
        raise AttributeError(f"the runtime has no method {method!r}")
    return fn


def start_call(fn: Any, args: tuple[Any, ...], executor: Executor | None) -> Awaitable[Any]:
    if inspect.iscoroutinefunction(fn):
        return cast(Awaitable[Any], asyncio.ensure_future(fn(*args)))
    return asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def open_stream(fn: Any, args: tuple[Any, ...], out: StreamOut,
                executor: Executor | None) -> Callable[[], None]:
    """Start a stream; returns its cancel. Raises what the method raises at its start."""
    if inspect.isasyncgenfunction(fn):
        task = asyncio.ensure_future(_pull_async(fn(*args), out))
        # Cancelled before its first step, the task never enters _pull_async's try.
        task.add_done_callback(lambda _: out.end())

        def cancel_task() -> None:
            task.cancel()

        return cancel_task
    if inspect.isgeneratorfunction(fn):
        stop = threading.Event()
        asyncio.get_running_loop().run_in_executor(executor, _pull_sync, fn(*args), out, stop)
        return stop.set
    cancel: Callable[[], None] = fn(*args, out=out)
    return cancel


async def _pull_async(items: Any, out: StreamOut) -> None:
    try:
        async for item in items:
            out.send(item)
    except asyncio.CancelledError:
        out.end()
    except Exception as exc:
        out.end(portable_error(exc))
    else:
        out.end()


def _pull_sync(items: Any, out: StreamOut, stop: threading.Event) -> None:
    try:
        for item in items:
            if stop.is_set():
                items.close()
                break
            out.send(item)
    except Exception as exc:
        out.end(portable_error(exc))
    else:
        out.end()


class Outbox:
    """Stream items from every thread, handed on as one batch per flush.

    A runtime with an engine flushes after each of its steps (its kind's `step_hook`);
    otherwise the first item queued schedules a flush on the loop, so what one turn of the
    loop produced travels together.
    """

    def __init__(self, send: Callable[[list[tuple[int, Any]]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._items: list[tuple[int, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.flushed_by_runtime = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, stream_id: int, item: Any) -> None:
        with self._lock:
            self._items.append((stream_id, item))
            first = len(self._items) == 1
        if first and not self.flushed_by_runtime and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                self._loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        # Sent under the lock: two threads flushing (the engine's, the loop's) must not
        # reorder a stream's items.
        with self._lock:
            items, self._items = self._items, []
            if items:
                self._send(items)


class StreamOut:
    """What a stream method writes to: `send` each item, then `end` once (thread-safe)."""

    def __init__(self, outbox: Outbox, stream_id: int, on_end: Callable[[int], None]) -> None:
        self._outbox = outbox
        self._id = stream_id
        self._on_end = on_end
        self._ended = False

    def send(self, item: Any) -> None:
        if not self._ended:
            self._outbox.add(self._id, item)

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._outbox.add(self._id, End(error))
        self._on_end(self._id)
