"""The embeddings kind: ONNX or sentence-transformers encoders behind /v1/embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.config import EmbeddingOptions
from modelserve.kinds.base import MetricDef, ModelKind

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec
    from modelserve.engine.embed_batcher import BatchStats
    from modelserve.runtimes.embeddings import EmbeddingRuntime
    from modelserve.worker.handle import WorkerHandle


def _build(spec: ModelSpec) -> EmbeddingRuntime:
    from modelserve.runtimes.embeddings import EmbeddingRuntime

    return EmbeddingRuntime(spec)


def _describe(runtime: EmbeddingRuntime) -> dict[str, Any]:
    return runtime.describe()


def _front(spec: ModelSpec, worker: WorkerHandle, info: dict[str, Any]) -> EmbeddingRuntime:
    from modelserve.worker.embeddings_front import EmbeddingsFront

    # The front end offers the routes this runtime's methods (typed as the runtime).
    return EmbeddingsFront(spec, worker, info)  # type: ignore[return-value]


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import embeddings

    return (embeddings.router,)


def _stats(runtime: EmbeddingRuntime) -> BatchStats:
    return runtime.batcher.stats


EMBEDDINGS: ModelKind[EmbeddingRuntime] = ModelKind(
    name="embeddings",
    # auto: onnx where the model has (or can be given) an ONNX export, else
    # sentence-transformers; see runtimes/embeddings_auto.py for the measured rule.
    runtimes={"auto": EmbeddingOptions, "onnx": EmbeddingOptions,
              "sentence-transformers": EmbeddingOptions},
    default_runtime="auto",
    build=_build,
    describe=_describe,
    front=_front,
    routers=_routers,
    metrics=(
        MetricDef("modelserve_embedding_batches", "counter", "Embedding forward passes",
                  "batches"),
        MetricDef("modelserve_embedding_batch_inputs", "counter",
                  "Inputs embedded (in batches)", "inputs"),
        MetricDef("modelserve_embedding_max_batch_size", "gauge",
                  "Largest embedding batch so far", "max_batch_size"),
    ),
    stats=_stats,
    use="embeddings",
)
