"""OpenAI wire types of /v1/embeddings. No serving logic lives here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from modelserve.api.protocol import OpenAIModel


def non_empty_input(value: Any) -> Any:
    """An embeddings `input` given as a list has at least one item (Ollama's /api/embed too)."""
    if isinstance(value, list) and not value:
        raise ValueError("input must not be an empty list")
    return value


class EmbeddingRequest(OpenAIModel):
    model: str = Field(min_length=1)
    # As `_non_empty` checks: a list input has at least one item.
    input: str | list[str] | list[int] | list[list[int]] = Field(json_schema_extra={"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
         "minItems": 1}]})
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    truncate: bool = False  # modelserve extra: cut over-long inputs instead of a 400

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        return non_empty_input(value)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
