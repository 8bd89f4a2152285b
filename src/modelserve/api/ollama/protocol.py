"""Ollama wire types: what the `ollama` client and Ollama-speaking tools send. Unknown
top-level fields are accepted and ignored, as Ollama does (clients add new ones often);
known fields we cannot honour (`suffix`, `template`, `context`, unknown `options`) are
refused by name where they are read (chat.py, options.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelserve.api.protocol_embeddings import non_empty_input


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionCall(Lenient):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)  # an object, not JSON text


class ToolCall(Lenient):
    function: FunctionCall


class ChatMessage(Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = None  # base64, no data: prefix
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None  # a tool result: the tool it came from
    thinking: str | None = None  # an earlier answer's thoughts: templates drop them


class ToolFunction(Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDefinition(Lenient):
    type: Literal["function"] = "function"
    function: ToolFunction


Format = Literal["json", ""] | dict[str, Any] | None
Think = bool | Literal["low", "medium", "high"] | None
KeepAlive = float | str | None


class Generative(Lenient):
    """What chat and generate share."""

    model: str = Field(min_length=1)
    format: Format = None
    options: dict[str, Any] | None = None
    think: Think = None
    keep_alive: KeepAlive = None
    stream: bool = True  # Ollama streams unless told not to
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)


class ChatRequest(Generative):
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[ToolDefinition] | None = None


class GenerateRequest(Generative):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class EmbedRequest(Lenient):
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        return non_empty_input(value)


class EmbeddingsRequest(Lenient):
    """The legacy /api/embeddings: one prompt, one vector."""

    model: str = Field(min_length=1)
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class ShowRequest(Lenient):
    model: str | None = None
    name: str | None = None  # older clients' name for `model`
    verbose: bool = False


class PullRequest(Lenient):
    model: str | None = None
    name: str | None = None  # older clients' name for `model`
    stream: bool = True


class OllamaError(BaseModel):
    """Ollama's error body (api/ollama/errors.py writes it)."""

    error: str


class Details(BaseModel):
    parent_model: str = ""
    format: str
    family: str
    families: list[str] | None = None
    parameter_size: str
    quantization_level: str


class Version(BaseModel):
    version: str
