"""The embeddings kind: ONNX or sentence-transformers encoders behind /v1/embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modelserve.kinds.base import MetricDef, ModelKind
from modelserve.kinds.options import EmbeddingOptions

if TYPE_CHECKING:
    from modelserve.runtimes.st_layout import Floats


class EmbeddingsModel(Protocol):
    """What /v1/embeddings holds of an embeddings model (fronts/embeddings.py)."""

    created: int
    dimension: int
    n_vocab: int
    max_tokens: int  # per input
    max_inputs: int  # per request
    matryoshka: bool  # `dimensions` allowed

    def card(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    async def tokenize_all(self, texts: list[str]) -> list[list[int]]: ...

    async def embed(self, inputs: list[list[int]], dimensions: int | None = None
                    ) -> list[Floats]: ...


EMBEDDINGS: ModelKind[EmbeddingsModel] = ModelKind(
    name="embeddings",
    # auto: onnx where the model has (or can be given) an ONNX export, else
    # sentence-transformers; see runtimes/embeddings_auto.py for the measured rule.
    runtimes={"auto": EmbeddingOptions, "onnx": EmbeddingOptions,
              "sentence-transformers": EmbeddingOptions},
    default_runtime="auto",
    use="embeddings",
    # Under 8 chat streams and 32 embeddings clients on 2 cores, nice 10 took chat from 82 to
    # 105 tok/s (ITL p99 196 -> 150 ms) for 4 % fewer embeddings/s; alone, no change
    # (docs/benchmarks.md, mixed load).
    cpu_nice=10,
    metrics=(
        MetricDef("modelserve_embedding_batches", "counter", "Embedding forward passes",
                  "batches"),
        MetricDef("modelserve_embedding_batch_inputs", "counter",
                  "Inputs embedded (in batches)", "inputs"),
        MetricDef("modelserve_embedding_max_batch_size", "gauge",
                  "Largest embedding batch so far", "max_batch_size"),
    ),
    runtime="modelserve.runtimes.embeddings:EMBEDDINGS_RUNTIME",
    serving="modelserve.fronts.embeddings:EMBEDDINGS_SERVING",
)
