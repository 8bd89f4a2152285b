"""Rerankers in the model's worker: a cross-encoder (query and document read together by a
sequence classifier) or a bi-encoder (an embeddings model; cosine of the two vectors).

Both batch the documents of every request in flight through the embeddings batcher
(engine/embed_batcher.py): sorted by length, cut by padded tokens, a few ms to fill.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modelserve.config import ModelSpec
from modelserve.engine.embed_batcher import EmbeddingBatcher
from modelserve.kinds.options import BiEncoderOptions, CrossEncoderOptions
from modelserve.kinds.wiring import KindRuntime

logger = logging.getLogger(__name__)


@dataclass
class RerankStats:
    requests: int = 0
    documents: int = 0
    batches: int = 0


class Tally:
    """What a reranker has scored (/metrics); its forward passes are its batcher's."""

    def __init__(self, batcher: EmbeddingBatcher) -> None:
        self._batcher = batcher
        self._lock = threading.Lock()
        self._stats = RerankStats()

    def add(self, documents: int) -> None:
        with self._lock:
            self._stats.requests += 1
            self._stats.documents += documents

    def snapshot(self) -> RerankStats:
        with self._lock:
            return RerankStats(self._stats.requests, self._stats.documents,
                               self._batcher.stats.batches)


class Reranker(Protocol):
    created: int
    max_documents: int
    tally: Tally

    def tokenize(self, query: str, documents: list[str]) -> tuple[list[list[int]], int]: ...

    async def score(self, inputs: list[list[int]]) -> list[float]: ...

    def close(self) -> None: ...


class CrossEncoderRuntime:
    def __init__(self, spec: ModelSpec) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        opts = spec.options_as(CrossEncoderOptions)
        started = time.monotonic()
        directory = str(spec.resolve_source())
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self._torch = torch
        # local_files_only: a directory on disk, never the Hugging Face hub.
        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            directory, local_files_only=True).eval()
        limit = min(self.tokenizer.model_max_length,
                    getattr(self.model.config, "max_position_embeddings", 512))
        self.max_tokens = min(opts.max_tokens or limit, limit)
        self.max_documents = opts.max_documents
        # BERT-style models tell the query from the document by token type: 0 up to the
        # first separator, 1 after it (the batcher only carries token ids).
        self._typed = "token_type_ids" in self.tokenizer.model_input_names
        self._sep = self.tokenizer.sep_token_id
        self._pad = self.tokenizer.pad_token_id or 0
        self.batcher = EmbeddingBatcher(self._forward, opts.max_batch_tokens,
                                        opts.max_batch_wait_ms)
        self.tally = Tally(self.batcher)
        self.created = int(time.time())
        logger.info("loaded %s (cross-encoder, %s) from %s in %.2fs", spec.name,
                    type(self.model).__name__, directory, time.monotonic() - started)

    def tokenize(self, query: str, documents: list[str]) -> tuple[list[list[int]], int]:
        encoded = self.tokenizer([query] * len(documents), documents, truncation=True,
                                 max_length=self.max_tokens)
        ids: list[list[int]] = encoded["input_ids"]
        return ids, sum(len(row) for row in ids)

    def _forward(self, batch: list[list[int]]) -> npt.NDArray[np.float32]:
        width = max(len(row) for row in batch)
        ids = np.full((len(batch), width), self._pad, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            if self._typed and self._sep in row:
                types[i, row.index(self._sep) + 1: len(row)] = 1
        torch = self._torch
        inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self._typed:
            inputs["token_type_ids"] = torch.from_numpy(types)
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float()
        # One label: a relevance logit, squashed to 0..1 as sentence-transformers' CrossEncoder
        # does; several: the probability of the last ("relevant") label.
        scores = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 \
            else torch.softmax(logits, dim=1)[:, -1]
        out: npt.NDArray[np.float32] = scores.numpy().astype(np.float32).reshape(-1, 1)
        return out

    async def score(self, inputs: list[list[int]]) -> list[float]:
        rows = await self.batcher.embed(inputs)
        self.tally.add(len(inputs))
        return [float(row[0]) for row in rows]

    def close(self) -> None:
        self.batcher.close()


class BiEncoderRuntime:
    """The query and the documents embedded apart; the score is their cosine similarity."""

    def __init__(self, spec: ModelSpec) -> None:
        from modelserve.runtimes.embeddings import EmbeddingRuntime

        opts = spec.options_as(BiEncoderOptions)
        self.encoder = EmbeddingRuntime(spec.model_copy(update={"runtime": "auto"}))
        self.max_documents = opts.max_documents
        self.tally = Tally(self.encoder.batcher)
        self.created = self.encoder.created

    def tokenize(self, query: str, documents: list[str]) -> tuple[list[list[int]], int]:
        # Longer texts are cut to what the encoder reads, as a cross-encoder's pairs are.
        ids = [t[: self.encoder.max_tokens]
               for t in self.encoder.tokenize_all([query, *documents])]
        return ids, sum(len(row) for row in ids)

    async def score(self, inputs: list[list[int]]) -> list[float]:
        vectors = np.stack(await self.encoder.embed(inputs))
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        unit = vectors / norms[:, None]
        self.tally.add(len(inputs) - 1)  # the first input is the query
        return [float(s) for s in unit[1:] @ unit[0]]

    def close(self) -> None:
        self.encoder.close()


RUNTIMES: dict[str, type[CrossEncoderRuntime] | type[BiEncoderRuntime]] = {
    "cross-encoder": CrossEncoderRuntime, "bi-encoder": BiEncoderRuntime}


def _build(spec: ModelSpec) -> Reranker:
    return RUNTIMES[spec.runtime](spec)


def _describe(runtime: Reranker) -> dict[str, Any]:
    return {"created": runtime.created, "max_documents": runtime.max_documents}


def _stats(runtime: Reranker) -> RerankStats:
    return runtime.tally.snapshot()


RERANK_RUNTIME = KindRuntime(build=_build, describe=_describe, stats=_stats)
