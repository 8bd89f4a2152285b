"""Wire types of tool calling: the request's `tools`, `tool_choice` and `parallel_tool_calls`,
the assistant's `tool_calls` (in answers, stream deltas and the history a client sends back),
and the checks across them (api/tools.py serves them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's rule for function names; it also keeps a name safe inside a grammar literal.
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(BaseModel):
    name: str = Field(min_length=1)
    # A JSON string; a request's are checked in api/tools.py (an answer cut by max_tokens
    # may carry a cut one, and must still be served and cached).
    arguments: str


class ToolCall(BaseModel):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """One piece of a streamed call: the first has id, type and name (arguments ""), the
    rest only argument fragments, all with the call's index."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class ToolFields(BaseModel):
    """Tool fields of a chat request."""

    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    # Unset: a forced call is one call; true lets it be several (api/tools.py).
    parallel_tool_calls: bool | None = None
