"""The asyncio side of one generating sequence, wherever its engine runs: an async iterator
of its outputs, cancellable, which reports its latencies to a TimingSink."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from modelserve.engine.sequence import StepOutput, TimingSink


class Generation:
    def __init__(self, timing: TimingSink | None = None) -> None:
        self.queue: asyncio.Queue[StepOutput] = asyncio.Queue()
        self.on_cancel: Callable[[], None] = lambda: None
        self._timing = timing
        self._submitted = time.perf_counter()
        self._last_token_at: float | None = None
        self.finished = False

    def __aiter__(self) -> AsyncIterator[StepOutput]:
        return self._outputs()

    async def _outputs(self) -> AsyncIterator[StepOutput]:
        try:
            while not self.finished:
                out = await self.queue.get()
                self.finished = out.finish_reason is not None
                if self._timing is not None and out.token_ids:
                    self._observe(out)
                yield out
        finally:
            self.cancel()

    def _observe(self, out: StepOutput) -> None:
        assert self._timing is not None
        now = time.perf_counter()
        if self._last_token_at is None:
            if out.queue_seconds is not None:
                self._timing.queue_wait(out.queue_seconds)
            self._timing.first_token(now - self._submitted)
        else:
            self._timing.inter_token((now - self._last_token_at) / len(out.token_ids))
        self._last_token_at = now

    def cancel(self) -> None:
        """Free the sequence's slot at the engine's next step (no-op once finished)."""
        if not self.finished:
            self.finished = True
            self.on_cancel()
