"""OpenAI request fields this server cannot honour yet: refused by name, never ignored.

A client that asks for JSON that fits a schema, a tool call, reasoning or audio must get a 400
that names the field, not free text with a 200 (which agent frameworks would then try to parse
as the thing they asked for). Values that ask for nothing pass: an empty tool list, tool_choice
"none" or "auto" without tools. Constrained output (response_format, grammar, json_schema) is
served: protocol_output.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class UnsupportedChatFields(BaseModel):
    """Tools, reasoning and audio on chat completions."""

    model_config = ConfigDict(extra="allow")

    tools: list[Any] | None = None
    functions: list[Any] | None = None  # the deprecated form of tools
    tool_choice: Any = None
    function_call: Any = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tool calling is not supported by this server yet")
        return value

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, value: Any) -> Any:
        if value not in (None, "none", "auto"):
            raise ValueError("tool calling is not supported by this server yet")
        return value

    @field_validator("reasoning_effort")
    @classmethod
    def _no_reasoning(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("reasoning is not supported by this server yet")
        return value

    @field_validator("modalities")
    @classmethod
    def _text_out(cls, value: list[str] | None) -> list[str] | None:
        if value and any(m != "text" for m in value):
            raise ValueError("only text output is supported")
        return value

    @field_validator("audio", "web_search_options")
    @classmethod
    def _not_offered(cls, value: object) -> object:
        if value is not None:
            raise ValueError("not supported by this server")
        return value
