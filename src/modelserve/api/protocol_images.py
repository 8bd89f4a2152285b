"""OpenAI wire types of the Images API (generations, edits). No serving logic lives here."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from modelserve.api.protocol import NullMeansDefault

# OpenAI's values for dall-e-3 (standard, hd) and the GPT image models (low ... max, auto).
# A diffusion model has no such knob: they are accepted and ignored.
Quality = Literal["standard", "hd", "low", "medium", "high", "xhigh", "max", "auto"]


class ImageFields(NullMeansDefault):
    """Fields shared by generations and edits, plus the diffusers extras."""

    prompt: str = Field(max_length=32000)  # OpenAI's limit for its GPT image models
    model: str = Field(min_length=1)
    n: int = Field(1, ge=1)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
    quality: Quality | None = None
    user: str | None = None
    stream: bool = False  # refused with a 400 when true: no partial images here
    # diffusers extras
    negative_prompt: str | None = None
    num_inference_steps: int | None = Field(None, ge=1)
    guidance_scale: float | None = Field(None, ge=0, le=100)
    seed: int | None = Field(None, ge=0, lt=2**63)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value


class ImageGenerationRequest(ImageFields):
    style: Literal["vivid", "natural"] | None = None  # dall-e-3's; ignored


class ImageEditRequest(ImageFields):
    """The non-file fields of the multipart edits form."""

    strength: float | None = Field(None, gt=0, le=1)


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int = Field(default_factory=lambda: int(time.time()))
    data: list[ImageData]
    output_format: str | None = None
    size: str | None = None
