"""Wire types of what shapes an answer's length and drafts it: the vLLM / llama-server extras
`ignore_eos` and `min_tokens` (chat and completions), and OpenAI's Predicted Outputs
(`prediction`, chat only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError


def field_error(field: str, message: str, value: Any) -> ValidationError:
    """A model-level check's error located at one field: a plain ValueError from a model
    validator has no location, and the 400 would name no `param`."""
    return ValidationError.from_exception_data("request", [InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=(field,), input=value)])


class LengthExtras(BaseModel):
    """`ignore_eos` and `min_tokens`, which benchmark clients (GuideLLM, vLLM's bench) send
    to get answers of a set length."""

    ignore_eos: bool = Field(
        False, description="vLLM / llama-server extra: never end the answer at an "
        "end-of-generation token; it runs to max_tokens (or a stop string)")
    min_tokens: int = Field(
        0, ge=0, description="vLLM extra: no end-of-generation token (nor stop string) "
        "before this many tokens; not over max_tokens / max_completion_tokens")

    def token_limit(self) -> tuple[str, int | None]:
        """The field that caps the answer's length, and its value (None: the context's
        room): what `min_tokens` may not exceed."""
        return "max_tokens", None

    @model_validator(mode="after")
    def _min_within_max(self) -> LengthExtras:
        name, limit = self.token_limit()
        if limit is not None and self.min_tokens > limit:
            given = "" if name in self.model_fields_set else ", its default"
            raise field_error("min_tokens", f"{self.min_tokens} is more than {name} "
                              f"({limit}{given})", self.min_tokens)
        return self


class PredictionText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


def _text_parts(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        and set(p) <= {"type", "text"} for p in value)


class Prediction(BaseModel):
    """OpenAI's Predicted Outputs: text the answer is expected to repeat (a file being
    edited), drafted for speculative decoding. It never changes the answer, only its speed."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["content"]
    content: str | list[PredictionText]

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # Checked before the union does: its error would name a branch (`content.str`),
        # not the field the client sent.
        if not isinstance(value, str) and not _text_parts(value):
            raise ValueError('must be a string or a list of text parts ({"type": "text", '
                             '"text": ...})')
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class PredictionField(BaseModel):
    prediction: Prediction | None = None
