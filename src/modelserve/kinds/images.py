"""The images kind: diffusers pipelines behind /v1/images (generations, edits, url fetch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.config import DiffusionOptions
from modelserve.kinds.base import MetricDef, ModelKind

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec
    from modelserve.runtimes.diffusion import DiffusionRuntime, DiffusionStats
    from modelserve.worker.handle import WorkerHandle


def _build(spec: ModelSpec) -> DiffusionRuntime:
    from modelserve.runtimes.diffusion import DiffusionRuntime

    return DiffusionRuntime(spec)


def _describe(runtime: DiffusionRuntime) -> dict[str, Any]:
    return runtime.describe()


def _front(spec: ModelSpec, worker: WorkerHandle, info: dict[str, Any]) -> DiffusionRuntime:
    from modelserve.worker.images_front import ImagesFront

    # The front end offers the routes this runtime's methods (typed as the runtime).
    return ImagesFront(spec, worker, info)  # type: ignore[return-value]


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import images

    return (images.router,)


def _stats(runtime: DiffusionRuntime) -> DiffusionStats:
    return runtime.snapshot()


IMAGES: ModelKind[DiffusionRuntime] = ModelKind(
    name="images",
    runtimes={"diffusers": DiffusionOptions},
    default_runtime="diffusers",
    build=_build,
    describe=_describe,
    front=_front,
    routers=_routers,
    metrics=(
        MetricDef("modelserve_image_generations", "counter", "Image requests completed",
                  "generations"),
        MetricDef("modelserve_image_images", "counter", "Images generated", "images"),
        MetricDef("modelserve_image_steps", "counter",
                  "Denoising steps run (cancelled work included)", "steps"),
        MetricDef("modelserve_image_cancelled", "counter",
                  "Image requests cancelled (client gone)", "cancelled"),
        MetricDef("modelserve_image_failed", "counter", "Image requests that failed", "failed"),
        MetricDef("modelserve_image_waiting", "gauge", "Image requests queued", "waiting"),
        MetricDef("modelserve_image_running", "gauge", "Image requests running", "running"),
        MetricDef("modelserve_image_seconds", "counter", "Time inside diffusers pipeline calls",
                  "seconds"),
    ),
    stats=_stats,
    use="image generation",
)
