"""An image-generation model as the API process holds it while diffusers runs in its worker.

Size limits and the store behind `response_format: url` live here (the store is kept across
the model's restarts and reloads, so a URL handed out stays good until it expires); each job
goes to the worker, and cancelling the awaiting request cancels the job there at its next
denoising step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.kinds.images import URL_STORE, ImagesModel
from modelserve.kinds.options import DiffusionOptions
from modelserve.kinds.wiring import KindServing
from modelserve.runtimes.image_jobs import ImageJob
from modelserve.runtimes.image_sizes import SizeLimits
from modelserve.runtimes.image_store import ImageStore, make_store
from modelserve.worker.transport import Worker

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec

class ImagesFront:
    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        opts = spec.options_as(DiffusionOptions)
        self.spec = spec
        self.worker = worker
        self.options = opts
        self.limits: SizeLimits = info["limits"]
        self.created: int = info["created"]
        config = (opts.url_storage, opts.url_ttl_seconds, opts.url_memory_bytes)
        if kept.get(f"{URL_STORE}.config") != config:  # a reload may move where urls live
            kept[URL_STORE], kept[f"{URL_STORE}.config"] = make_store(*config), config
        self.store: ImageStore = kept[URL_STORE]

    def card(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass  # the store outlives the front

    async def generate(self, job: ImageJob) -> list[bytes]:
        blobs: list[bytes] = await self.worker.acall("generate", job)
        return blobs


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import images

    return (images.router,)


IMAGES_SERVING: KindServing[ImagesModel] = KindServing(front=ImagesFront, routers=_routers)
