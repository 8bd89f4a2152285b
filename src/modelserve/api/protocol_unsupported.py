"""OpenAI request fields this server cannot honour yet: refused by name, never ignored.

A client that asks for audio or the deprecated `functions` must get a 400 that
names the field, not free text with a 200 (which agent frameworks would then try to parse as
the thing they asked for). Values that ask for nothing pass: an empty function list,
function_call "none" or "auto". Constrained output (response_format, grammar, json_schema) is
served (protocol_output.py), and so are tools (protocol_tools.py) and Predicted Outputs
(protocol_generation.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class UnsupportedChatFields(BaseModel):
    """Deprecated functions and audio on chat completions."""

    model_config = ConfigDict(extra="allow")

    functions: list[Any] | None = None  # the deprecated form of tools
    function_call: Any = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("the deprecated `functions` are not supported; send `tools`")
        return value

    @field_validator("function_call")
    @classmethod
    def _no_function_call(cls, value: Any) -> Any:
        if value not in (None, "none", "auto"):
            raise ValueError("the deprecated `function_call` is not supported; send "
                             "`tool_choice`")
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
