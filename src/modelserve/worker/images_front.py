"""An image-generation model as the API process holds it while diffusers runs in its worker.

Size limits and the store behind `response_format: url` live here (the image URL route
reads the store); each job goes to the worker, and cancelling the awaiting request cancels
the job there at its next denoising step.
"""

from __future__ import annotations

from typing import Any

from modelserve.config import DiffusionOptions, ModelSpec
from modelserve.runtimes.diffusion import ImageJob
from modelserve.runtimes.image_sizes import SizeLimits
from modelserve.runtimes.image_store import make_store
from modelserve.worker.handle import WorkerHandle


class ImagesFront:
    def __init__(self, spec: ModelSpec, worker: WorkerHandle, info: dict[str, Any]) -> None:
        opts = spec.options_as(DiffusionOptions)
        self.spec = spec
        self.worker = worker
        self.options = opts
        self.limits: SizeLimits = info["limits"]
        self.created: int = info["created"]
        self.store = make_store(opts.url_storage, opts.url_ttl_seconds, opts.url_memory_bytes)

    async def generate(self, job: ImageJob) -> list[bytes]:
        """Encoded images; raises QueueFull (from the worker) when too many are waiting."""
        blobs: list[bytes] = await self.worker.acall("generate", job)
        return blobs

    def close(self) -> None:
        self.worker.stop()
