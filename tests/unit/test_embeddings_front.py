"""The embeddings front's calls to its worker: requests of one loop turn go as one call, at
most CALLS_IN_FLIGHT calls are out, and what arrives meanwhile goes as the next one."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from modelserve.config import ModelSpec
from modelserve.fronts.embeddings import CALLS_IN_FLIGHT, EmbeddingsFront


class HeldWorker:
    """A worker whose `embed_many` calls wait until the test lets them answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], asyncio.Future[None]]] = []

    async def acall(self, method: str, jobs: list[Any]) -> list[list[np.ndarray]]:
        assert method == "embed_many"
        release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls.append((jobs, release))
        await release
        return [[np.zeros(2, dtype=np.float32)] * len(inputs) for inputs, _ in jobs]

    def out(self) -> int:
        return sum(not release.done() for _, release in self.calls)


def front(worker: HeldWorker) -> EmbeddingsFront:
    spec = ModelSpec.model_validate({"name": "e", "kind": "embeddings",
                                     "source": {"path": "/nonexistent"}})
    info = {"dimension": 2, "n_vocab": 10, "max_tokens": 8, "max_inputs": 8,
            "matryoshka": False, "created": 0, "max_waiting_inputs": 100,
            "tokenizer_file": None}
    return EmbeddingsFront(spec, worker, info, {})  # type: ignore[arg-type]


async def _turns(n: int = 8) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_requests_wait_while_calls_are_out_then_go_together() -> None:
    async def scenario() -> None:
        worker = HeldWorker()
        emb = front(worker)
        first = [asyncio.ensure_future(emb.embed([[1]])) for _ in range(3)]
        await _turns()
        assert [len(jobs) for jobs, _ in worker.calls] == [3]  # one loop turn, one call
        seconds = []
        for _ in range(CALLS_IN_FLIGHT - 1):  # one request a turn: a call each
            seconds.append(asyncio.ensure_future(emb.embed([[2]])))
            await _turns()
        assert len(worker.calls) == CALLS_IN_FLIGHT
        later = [asyncio.ensure_future(emb.embed([[3]])) for _ in range(5)]
        await _turns()
        assert len(worker.calls) == CALLS_IN_FLIGHT  # the five wait here
        worker.calls[0][1].set_result(None)  # a call answers: the five go as one call
        await _turns()
        assert all(f.done() for f in first) and not any(f.done() for f in seconds)
        assert [len(jobs) for jobs, _ in worker.calls] == [3] + [1] * len(seconds) + [5]
        assert worker.out() == CALLS_IN_FLIGHT
        for _, release in worker.calls[1:]:
            release.set_result(None)
        await asyncio.gather(*seconds, *later)
        assert worker.out() == 0 and len(worker.calls) == CALLS_IN_FLIGHT + 1

    asyncio.run(scenario())


def test_a_failed_call_fails_its_requests_and_the_next_call_still_goes() -> None:
    class FailingOnce(HeldWorker):
        async def acall(self, method: str, jobs: list[Any]) -> list[list[np.ndarray]]:
            if not self.calls:
                self.calls.append((jobs, asyncio.get_running_loop().create_future()))
                self.calls[0][1].set_result(None)
                raise RuntimeError("the worker died")
            return await super().acall(method, jobs)

    async def scenario() -> None:
        worker = FailingOnce()
        emb = front(worker)
        failed = asyncio.ensure_future(emb.embed([[1]]))
        await _turns()
        assert isinstance(failed.exception(), RuntimeError)
        ok = asyncio.ensure_future(emb.embed([[2]]))
        await _turns()
        worker.calls[-1][1].set_result(None)
        assert len(await ok) == 1

    asyncio.run(scenario())
