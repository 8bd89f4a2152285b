"""An embeddings model as the API process holds it while the encoder runs in its worker.

Tokenizing stays here when the model's tokenizer is a `tokenizers` file (the ONNX layout), so
the route checks lengths without a round trip; otherwise all of a request's texts go to the
worker in one call. The batching and the forward passes run in the worker, which batches
inputs from all requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.failures import QueueFull
from modelserve.kinds.embeddings import EmbeddingsModel
from modelserve.kinds.wiring import KindServing
from modelserve.runtimes.st_layout import Floats
from modelserve.worker.transport import Worker

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec


# Requests with more texts than this are tokenized in a thread (tokenizers' batch encode
# runs in parallel without the GIL); fewer are quicker on the loop than a thread hop.
BIG_BATCH = 32

# Calls to the worker at once. A new call leaves only when fewer are out, so requests that
# arrive while the worker runs a pass wait here and go together as the next call: on a core
# shared with the worker, sending each request at once made the worker (woken first) run
# passes of 1-2 inputs at 64 clients, 3x the CPU per input of a pass of 32 (docs/benchmarks.md).
# More than one: the worker has the next call queued when a pass ends, so it never idles for
# the round trip. Four, not two: the worker's batcher waits for as many inputs as were in
# flight at its last pass (engine/embed_batcher.py), and with two calls out, 4 clients' requests
# stayed split into passes of 2 (one core: 303 emb/s at two, 356 at four).
CALLS_IN_FLIGHT = 4


class EmbeddingsFront:
    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        self.spec = spec
        self.worker = worker
        self.dimension: int = info["dimension"]
        self.n_vocab: int = info["n_vocab"]
        self.max_tokens: int = info["max_tokens"]
        self.max_inputs: int = info["max_inputs"]
        self.matryoshka: bool = info["matryoshka"]
        self.created: int = info["created"]
        # Inputs sent and not yet answered: every request passes here, so this is the
        # model's queue, bounded even while its worker is stalled.
        self._capacity: int = info["max_waiting_inputs"]
        self._waiting = 0
        self._tokenizer: Any = None
        self._pending: list[tuple[list[list[int]], int | None, asyncio.Future[list[Floats]]]] = []
        self._sending: set[asyncio.Task[Any]] = set()
        self._send_scheduled = False
        if info["tokenizer_file"] is not None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(info["tokenizer_file"])
            self._tokenizer.no_truncation()
            self._tokenizer.no_padding()

    def card(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass  # nothing held here but Python objects

    async def tokenize_all(self, texts: list[str]) -> list[list[int]]:
        if self._tokenizer is None:
            tokens: list[list[int]] = await self.worker.acall("tokenize_all", texts)
            return tokens
        if len(texts) > BIG_BATCH:  # milliseconds of work: off the loop, in parallel
            encodings = await asyncio.to_thread(self._tokenizer.encode_batch, texts)
            return [list(e.ids) for e in encodings]
        return [list(self._tokenizer.encode(text).ids) for text in texts]

    async def embed(self, inputs: list[list[int]], dimensions: int | None = None
                    ) -> list[Floats]:
        """Requests arriving in the same turn of the event loop, or while CALLS_IN_FLIGHT
        calls are out, go to the worker as one call."""
        if self._waiting and self._waiting + len(inputs) > self._capacity:
            raise QueueFull()
        future: asyncio.Future[list[Floats]] = asyncio.get_running_loop().create_future()
        self._pending.append((inputs, dimensions, future))
        self._schedule_send()
        self._waiting += len(inputs)
        try:
            return await future
        finally:
            self._waiting -= len(inputs)

    def _schedule_send(self) -> None:
        """Send what is pending at the end of this loop turn, if a call may leave now."""
        if self._pending and not self._send_scheduled \
                and len(self._sending) < CALLS_IN_FLIGHT:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_pending)

    def _send_pending(self) -> None:
        self._send_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        jobs = [(inputs, dims) for inputs, dims, _ in pending]
        self._sending.add(task := asyncio.ensure_future(self.worker.acall("embed_many", jobs)))
        task.add_done_callback(lambda done: _settle(done, [f for _, _, f in pending]))
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[Any]) -> None:
        self._sending.discard(task)
        self._schedule_send()  # what arrived meanwhile goes as one call


def _settle(done: asyncio.Future[list[Any]], futures: list[asyncio.Future[list[Floats]]]
            ) -> None:
    """Hand each request its own outcome (a request cancelled meanwhile is skipped)."""
    if done.cancelled():
        outcomes: list[Any] = [asyncio.CancelledError()] * len(futures)
    elif done.exception() is not None:
        outcomes = [done.exception()] * len(futures)
    else:
        outcomes = done.result()
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import embeddings
    from modelserve.api.ollama import embed

    return (embeddings.router, embed.router)


EMBEDDINGS_SERVING: KindServing[EmbeddingsModel] = KindServing(
    front=EmbeddingsFront, routers=_routers)
