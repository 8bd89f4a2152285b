"""OpenAI wire types of the Images API (generations, edits). No serving logic lives here."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from modelserve.api.protocol import NullMeansDefault

# OpenAI's values for dall-e-3 (standard, hd) and the GPT image models (low ... max, auto).
# A diffusion model has no such knob: they are accepted and ignored.
Quality = Literal["standard", "hd", "low", "medium", "high", "xhigh", "max", "auto"]


def _seed_bound(schema: dict[str, Any]) -> None:
    """The schema's bound on `seed`: the largest double below 2**63. Clients and fuzzers
    read JSON numbers as doubles, and 2**63 itself rounds to a value the server refuses."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "integer":
            branch.pop("exclusiveMaximum", None)
            branch["maximum"] = 2**63 - 1024


class ImageFields(NullMeansDefault):
    """Fields shared by generations and edits, plus the diffusers extras."""

    # OpenAI's limit for its GPT image models. Non-blank is checked by `_prompt_not_blank`
    # (with its own message); the schema says so with a non-space pattern, one character not
    # space to Python's str.isspace (which adds \x1c-\x1f and \x85) nor to JSON Schema's \s.
    prompt: str = Field(max_length=32000, json_schema_extra={
        "minLength": 1, "pattern": r"[^\s\x1c-\x1f\x85]"})
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
    seed: int | None = Field(None, ge=0, lt=2**63, json_schema_extra=_seed_bound)

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
