"""The embeddings batcher: passes wait for the company that was in flight at the last one,
a lone request does not wait, and a backlog waits only where one core is shared."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from modelserve.engine.embed_batcher import EmbeddingBatcher, plan_batches


class GatedEncoder:
    """Records each pass's size; the first pass holds until `release` is set."""

    def __init__(self) -> None:
        self.passes: list[int] = []
        self.release = threading.Event()

    def __call__(self, batch: list[list[int]]) -> np.ndarray:
        if not self.passes:
            self.release.wait(10)
        self.passes.append(len(batch))
        return np.ones((len(batch), 2), dtype=np.float32)


async def closed_loop_of_four(batcher: EmbeddingBatcher, encoder: GatedEncoder) -> None:
    """One input runs (held), three queue behind it, a fourth comes back 100 ms later."""
    first = asyncio.ensure_future(batcher.embed([[1, 2]]))
    await asyncio.sleep(0.1)
    rest = asyncio.ensure_future(batcher.embed([[1, 2], [3], [4, 5, 6]]))
    await asyncio.sleep(0.05)
    encoder.release.set()
    await first
    await asyncio.sleep(0.1)
    await asyncio.gather(rest, batcher.embed([[7]]))


@pytest.mark.parametrize(("one_core", "passes"), [(True, [1, 4]), (False, [1, 3, 1])])
def test_a_pass_waits_for_the_inputs_in_flight_only_where_one_core_is_shared(
        monkeypatch: pytest.MonkeyPatch, one_core: bool, passes: list[int]) -> None:
    monkeypatch.setattr(EmbeddingBatcher, "_one_core", lambda self: one_core)
    encoder = GatedEncoder()
    batcher = EmbeddingBatcher(encoder, max_batch_tokens=512, max_wait_ms=2000)
    try:
        asyncio.run(closed_loop_of_four(batcher, encoder))
    finally:
        batcher.close()
    assert encoder.passes == passes


def test_a_lone_request_does_not_wait_for_company() -> None:
    encoder = GatedEncoder()
    encoder.release.set()
    batcher = EmbeddingBatcher(encoder, max_batch_tokens=512, max_wait_ms=5000)

    async def one_at_a_time() -> float:
        started = time.monotonic()
        for _ in range(3):
            await batcher.embed([[1, 2, 3]])
        return time.monotonic() - started

    try:
        assert asyncio.run(one_at_a_time()) < 2.0  # not 3 x 5 s
    finally:
        batcher.close()
    assert encoder.passes == [1, 1, 1]


def test_batches_are_planned_shortest_first_under_the_token_budget() -> None:
    assert plan_batches([5, 1, 3, 2], 6) == [[1, 3], [2], [0]]
