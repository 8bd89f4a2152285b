"""A reranker as the API process holds it while the model runs in its worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.kinds.rerank import RerankModel
from modelserve.kinds.wiring import KindServing
from modelserve.worker.transport import Worker

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec


class RerankFront:
    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        self.worker = worker
        self.scoring = spec.runtime
        self.created: int = info["created"]
        self.max_documents: int = info["max_documents"]

    def card(self) -> dict[str, Any]:
        return {"scoring": self.scoring}

    def close(self) -> None:
        pass

    async def tokenize(self, query: str, documents: list[str]) -> tuple[list[list[int]], int]:
        ids, tokens = await self.worker.acall("tokenize", query, documents)
        return ids, tokens

    async def score(self, inputs: list[list[int]]) -> list[float]:
        scores: list[float] = await self.worker.acall("score", inputs)
        return scores


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import rerank

    return (rerank.router,)


RERANK_SERVING: KindServing[RerankModel] = KindServing(front=RerankFront, routers=_routers)
