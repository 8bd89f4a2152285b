"""A model's jobs on threads of its own, bounded, stoppable, streamed to the event loop.

Transcription and speech synthesis are long blocking calls that yield results as they go
(segments, sentences). Each job runs a plain iterator on one of `workers` threads; at most
`max_waiting` more may wait (QueueFull past that); each item reaches the awaiting async
iterator as it is made; and a consumer that leaves early (a client gone, a cancel) stops
the job before its next item. The worker's shared call pool is never occupied by them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from modelserve.failures import QueueFull

T = TypeVar("T")
_DONE = object()


@dataclass
class JobStats:
    """A speech kind's stats (/metrics): its queue's, and the audio its jobs heard or made."""

    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    waiting: int = 0
    running: int = 0
    processing_seconds: float = 0.0  # time jobs ran
    audio_seconds: float = 0.0
    characters: int = 0

    @property
    def real_time_factor(self) -> float:
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else 0.0


class _Stopped(Exception):
    pass


class JobQueue:
    def __init__(self, name: str, workers: int, max_waiting: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._capacity = workers + max_waiting
        self._lock = threading.Lock()
        self.stats = JobStats()

    def snapshot(self) -> JobStats:
        with self._lock:
            return JobStats(**vars(self.stats))

    def count(self, audio_seconds: float, characters: int = 0) -> None:
        """Audio a job heard or made (called from its thread as it goes)."""
        with self._lock:
            self.stats.audio_seconds += audio_seconds
            self.stats.characters += characters

    async def run(self, make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """The items of `make()`, run on the queue's threads (QueueFull when it is full)."""
        with self._lock:
            if self.stats.waiting + self.stats.running >= self._capacity:
                raise QueueFull()
            self.stats.waiting += 1
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def push(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        try:
            self._executor.submit(self._drive, make, stop, push)
        except RuntimeError:  # shut down
            with self._lock:
                self.stats.waiting -= 1
            raise
        try:
            while (item := await items.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a consumer gone early stops the job before its next item

    def _drive(self, make: Callable[[], Iterator[T]], stop: threading.Event,
               push: Callable[[Any], None]) -> None:
        with self._lock:
            self.stats.waiting -= 1
            self.stats.running += 1
        started = time.monotonic()
        outcome = "completed"
        try:
            if stop.is_set():
                raise _Stopped()
            iterator = make()
            for item in iterator:
                if stop.is_set():
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
                    raise _Stopped()
                push(item)
            push(_DONE)
        except _Stopped:
            outcome = "cancelled"
            push(_DONE)
        except Exception as exc:
            outcome = "failed"
            push(exc)
        finally:
            with self._lock:
                self.stats.running -= 1
                self.stats.processing_seconds += time.monotonic() - started
                setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

