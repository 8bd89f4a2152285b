"""One image request as the diffusers runtime takes it (plain data: it crosses the worker's
pipe), and the ways it can end early."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

Mode = Literal["text", "image", "inpaint"]


class Cancelled(Exception):
    """Raised from the step callback to leave the denoising loop (and skip the VAE decode)."""


class UnsupportedMode(Exception):
    """The pipeline has no image-to-image or inpainting variant."""


@dataclass
class ImageJob:
    prompt: str
    width: int
    height: int
    steps: int
    n: int = 1
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    mode: Mode = "text"
    image: Image.Image | None = None
    mask: Image.Image | None = None
    strength: float | None = None
    output_format: str = "png"
    cancel: threading.Event = field(default_factory=threading.Event)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to a worker process: the cancel flag is that process's own (a Cancel message
        # cancels the awaiting task there, which sets it).
        return {k: v for k, v in vars(self).items() if k != "cancel"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, cancel=threading.Event())
