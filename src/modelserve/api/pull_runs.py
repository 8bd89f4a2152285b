"""A pull for an HTTP request: `fetch` in a thread of its own (the event loop never waits on
the network or the disk), its progress handed to the loop as it comes.

A route waits for the first downloaded bytes (`started`) before it answers, so a source that
is wrong or missing is an HTTP error of its own; later failures end the stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from modelserve.api.errors import APIError
from modelserve.pull import PullCancelled, PullError, PullProgress, fetch

REPORT_EVERY = 0.25  # seconds between two byte counts of the same step


@dataclass(frozen=True)
class Finished:
    path: Path


@dataclass(frozen=True)
class Failed:
    error: APIError


Event = PullProgress | Finished | Failed


def api_error(exc: PullError) -> APIError:
    status = exc.status
    return APIError(status, str(exc), param="source" if status == 400 else None,
                    type="invalid_request_error" if status < 500 else "server_error",
                    code="pull_failed")


class PullRun:
    def __init__(self, source: str) -> None:
        self.source = source
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.cancelled = threading.Event()
        self._last: tuple[str, float] = ("", 0.0)
        # A daemon thread, not the loop's executor: a shutdown never waits on a download.
        threading.Thread(target=self._run, name="modelserve-pull", daemon=True).start()

    async def started(self) -> list[Event]:
        """The events up to the first bytes (or the end): a failure among them is raised."""
        seen: list[Event] = []
        while True:
            event = await self.queue.get()
            if isinstance(event, Failed):
                raise event.error
            seen.append(event)
            if isinstance(event, Finished) or event.completed is not None:
                return seen

    async def events(self, seen: list[Event]) -> AsyncIterator[Event]:
        """The rest of the run, after `started`; a client gone stops the pull (its partial
        download is kept: the next pull resumes it)."""
        try:
            for event in seen:
                yield event
            if seen and isinstance(seen[-1], Finished):
                return
            while True:
                event = await self.queue.get()
                yield event
                if isinstance(event, Finished | Failed):
                    return
        finally:
            self.cancelled.set()

    def _run(self) -> None:
        try:
            path = fetch(self.source, progress=self._progress)
            self._put(Finished(path))
        except PullCancelled:
            pass
        except PullError as exc:
            self._put(Failed(api_error(exc)))
        except OSError as exc:
            self._put(Failed(APIError(500, f"the pull failed: {exc}", type="server_error",
                                      code="pull_failed")))

    def _progress(self, progress: PullProgress) -> None:
        if self.cancelled.is_set():
            raise PullCancelled
        now = time.monotonic()
        step, at = self._last
        done = progress.total is not None and progress.completed == progress.total
        if progress.status == step and not done and now - at < REPORT_EVERY:
            return
        self._last = (progress.status, now)
        self._put(progress)

    def _put(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


def progress_line(progress: PullProgress) -> dict[str, object]:
    return {k: v for k, v in vars(progress).items() if v is not None}
