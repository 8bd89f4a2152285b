"""The images kind: diffusers pipelines behind /v1/images (generations, edits, url fetch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modelserve.kinds.base import MetricDef, ModelKind
from modelserve.kinds.options import DiffusionOptions

if TYPE_CHECKING:
    from modelserve.runtimes.image_jobs import ImageJob
    from modelserve.runtimes.image_sizes import SizeLimits
    from modelserve.runtimes.image_store import ImageStore


# Where an image model's `url` store is kept in its registry entry (across restarts).
URL_STORE = "images.store"


class ImagesModel(Protocol):
    """What the image routes hold of an image model (fronts/images.py)."""

    created: int
    options: DiffusionOptions
    limits: SizeLimits
    store: ImageStore  # `url` results; kept across the model's restarts

    def card(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    async def generate(self, job: ImageJob) -> list[bytes]:
        """Encoded images (raises QueueFull when too many wait); cancelling the awaiting
        task stops the job at its next denoising step."""


IMAGES: ModelKind[ImagesModel] = ModelKind(
    name="images",
    runtimes={"diffusers": DiffusionOptions},
    default_runtime="diffusers",
    use="image generation",
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
    runtime="modelserve.runtimes.diffusion:IMAGES_RUNTIME",
    serving="modelserve.fronts.images:IMAGES_SERVING",
)
