"""The rerank kind: scores documents against a query behind /v1/rerank (and the /rerank,
/v2/rerank aliases), with a cross-encoder or with an embeddings model as a bi-encoder."""

from __future__ import annotations

from typing import Any, Protocol

from modelserve.kinds.base import MetricDef, ModelKind
from modelserve.kinds.options import BiEncoderOptions, CrossEncoderOptions


class RerankModel(Protocol):
    """What the rerank route holds of a reranker (fronts/rerank.py)."""

    created: int
    max_documents: int

    def card(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    async def tokenize(self, query: str, documents: list[str]) -> tuple[list[list[int]], int]:
        """The model's inputs for these documents (opaque to the route) and the tokens
        they hold (usage and admission)."""

    async def score(self, inputs: list[list[int]]) -> list[float]:
        """One relevance score per document, in the documents' order (raises QueueFull)."""


RERANK: ModelKind[RerankModel] = ModelKind(
    name="rerank",
    runtimes={"cross-encoder": CrossEncoderOptions, "bi-encoder": BiEncoderOptions},
    default_runtime="cross-encoder",
    use="reranking (/v1/rerank)",
    metrics=(
        MetricDef("modelserve_rerank_requests", "counter", "Rerank requests scored",
                  "requests"),
        MetricDef("modelserve_rerank_documents", "counter", "Documents scored", "documents"),
        MetricDef("modelserve_rerank_batches", "counter", "Forward passes", "batches"),
    ),
    runtime="modelserve.runtimes.rerank:RERANK_RUNTIME",
    serving="modelserve.fronts.rerank:RERANK_SERVING",
)
