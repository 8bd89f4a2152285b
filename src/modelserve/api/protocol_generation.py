"""Wire types of what shapes an answer's length: the vLLM / llama-server extras `ignore_eos`
and `min_tokens` (chat and completions)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
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
