"""Wire types of constrained output: OpenAI's `response_format` and llama.cpp's `grammar` and
`json_schema` extras, on chat and legacy completions (api/structured.py compiles them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = False


class ResponseFormat(BaseModel):
    # `_schema_with_its_type` in the schema: json_schema exactly when the type says so.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"type": {"const": "json_schema"}}},
        "then": {"required": ["json_schema"],
                 "properties": {"json_schema": {"type": "object"}}},
        "else": {"properties": {"json_schema": {"type": "null"}}}})

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object "
                             "({\"name\": ..., \"schema\": {...}})")
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f"'json_schema' goes with type 'json_schema', not {self.type!r}")
        return self


class OutputControls(BaseModel):
    """Constrained output fields shared by chat and completions requests."""

    response_format: ResponseFormat | None = None
    grammar: str | None = Field(None, description="llama.cpp extra: a GBNF grammar")
    json_schema: dict[str, Any] | None = Field(
        None, description="llama.cpp extra: a JSON schema the output must fit")
