"""OpenAI wire types (requests and responses). No serving logic lives here."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelserve.api.protocol_generation import LengthExtras, PredictionField
from modelserve.api.protocol_output import OutputControls
from modelserve.api.protocol_tools import DeltaToolCall, ToolCall, ToolFields
from modelserve.api.protocol_unsupported import UnsupportedChatFields

# -- shared ---------------------------------------------------------------------------------


class OpenAIModel(BaseModel):
    # Unknown fields are accepted and ignored, as OpenAI-compatible servers do for client extras.
    model_config = ConfigDict(extra="allow")


class NullMeansDefault(OpenAIModel):
    """Many clients (the openai SDK among them) send `"field": null` for "not set": such
    fields are dropped before validation, so they take their defaults."""

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class StreamOptions(OpenAIModel):
    include_usage: bool = False


# `_check_stream_options` in the schema: stream_options (not null) needs stream true.
_STREAM_RULE: dict[str, Any] = {
    "if": {"required": ["stream_options"], "properties": {"stream_options": {"type": "object"}}},
    "then": {"required": ["stream"], "properties": {"stream": {"const": True}}}}


class SamplingFields(NullMeansDefault, LengthExtras):
    """Sampling fields shared by chat and legacy completions (plus llama.cpp and vLLM
    extras)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"allOf": [_STREAM_RULE]})

    model: str = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int | None = None
    # The schema states what `_check_stop` enforces: at most 4, none empty.
    stop: str | list[str] | None = Field(None, json_schema_extra={"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4},
        {"type": "null"}]})
    max_tokens: int | None = Field(None, ge=1)
    # The upper bound is the server's `limits.max_n` (api/input_limits.py), one place to set it.
    n: int = Field(1, ge=1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repeat_penalty: float = Field(1.0, gt=0.0, le=10.0)
    # As `_check_logit_bias` checks: token-id keys, biases in [-100, 100].
    logit_bias: dict[str, float] | None = Field(None, json_schema_extra={"anyOf": [
        {"type": "object", "propertyNames": {"pattern": "^-?[0-9]+$"},
         "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        {"type": "null"}]})
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    cache_salt: str | None = Field(
        None, min_length=1, max_length=256, description="vLLM extra: prompt KV (the slots' "
        "and the prompt store's) is reused only between requests with the same salt, so no "
        "one can time whether another's prompt was seen")

    @property
    def usage_requested(self) -> bool:
        """A stream ends with a usage chunk (`stream_options.include_usage`)."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def token_limit(self) -> tuple[str, int | None]:
        return "max_tokens", self.max_tokens

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.removeprefix("-").isdigit():
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values must be in [-100, 100], got {bias}")
        return value

    @model_validator(mode="after")
    def _check_stream_options(self) -> SamplingFields:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None
    # Chat: reasoning and Predicted Outputs' counts, as OpenAI's; left out where not counted.
    completion_tokens_details: dict[str, int] | None = Field(
        None, exclude_if=lambda v: v is None)


# -- chat -----------------------------------------------------------------------------------


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


# What the validators and the tool checks (api/tools.py) demand of a message beyond its
# fields' types, stated in the JSON schema so that generated clients and fuzzers know it:
# only an assistant turn may omit `content` or carry `tool_calls`; a tool turn names its call.
_MESSAGE_RULES: dict[str, Any] = {"allOf": [
    {"if": {"properties": {"role": {"const": "assistant"}}},
     "else": {"required": ["content"],
              "properties": {"content": {"not": {"type": "null"}},
                             "tool_calls": {"type": ["array", "null"], "maxItems": 0}}}},
    {"if": {"properties": {"role": {"const": "tool"}}},
     "then": {"required": ["tool_call_id"],
              "properties": {"tool_call_id": {"type": "string", "minLength": 1}}}}]}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_MESSAGE_RULES)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant turns that called tools

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"content is required for role {self.role!r}")
        return self


# Names the template is rendered with already: chat_template_kwargs may not replace them.
TEMPLATE_NAMES = frozenset({"messages", "tools", "add_generation_prompt", "bos_token",
                            "eos_token"})


class ChatCompletionRequest(SamplingFields, OutputControls, ToolFields, PredictionField,
                            UnsupportedChatFields):
    messages: list[ChatMessage] = Field(min_length=1)
    # Reasoning models' templates read these (Qwen3's `enable_thinking`, gpt-oss's
    # `reasoning_effort`); templates that do not simply ignore them.
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="modelserve/vLLM extra: more variables for the chat template")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    # `_check_logprobs` in the schema: top_logprobs over 0 needs logprobs true.
    model_config = ConfigDict(extra="allow", json_schema_extra={"allOf": [_STREAM_RULE, {
        "if": {"required": ["top_logprobs"],
               "properties": {"top_logprobs": {"type": "integer", "minimum": 1}}},
        "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}}, {
        # api/tools.py's `plan_tools`: a tool_choice other than none needs tools.
        "if": {"required": ["tool_choice"], "properties": {"tool_choice": {
            "not": {"anyOf": [{"type": "null"}, {"const": "none"}]}}}},
        "then": {"required": ["tools"],
                 "properties": {"tools": {"type": "array", "minItems": 1}}}}]})

    @model_validator(mode="after")
    def _check_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        return self

    def token_limit(self) -> tuple[str, int | None]:
        if self.max_completion_tokens is not None:  # what the answer is cut at (api/chat.py)
            return "max_completion_tokens", self.max_completion_tokens
        return super().token_limit()

    @field_validator("chat_template_kwargs")
    @classmethod
    def _free_names(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        taken = sorted(TEMPLATE_NAMES & set(value or {}))
        if taken:
            raise ValueError(f"{', '.join(taken)} cannot be set here: the server renders the "
                             "template with its own value")
        return value

    def template_variables(self) -> dict[str, Any]:
        """The extra variables the chat template is rendered with."""
        extra = dict(self.chat_template_kwargs or {})
        if self.reasoning_effort is not None:
            extra["reasoning_effort"] = self.reasoning_effort
        return extra


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobEntry] | None
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    # What a reasoning model thought before answering (its `<think>` block), as llama-server,
    # vLLM and DeepSeek's API name it; left out of the body when there is none.
    reasoning_content: str | None = Field(None, exclude_if=lambda v: v is None)
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: _id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None


# -- legacy completions ---------------------------------------------------------------------


class CompletionRequest(SamplingFields, OutputControls):
    # Non-empty, as `_non_empty` and the route (api/completions.py) check: empty text is a 400.
    prompt: str | list[str] | list[int] | list[list[int]] = Field(json_schema_extra={"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        {"type": "array", "minItems": 1,
         "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1}}]})
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=1)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        if isinstance(value, list) and any(isinstance(p, list) and not p for p in value):
            raise ValueError("token-id prompts must not be empty")
        return value


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: _id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# -- models and errors ----------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "modelserve"
    kind: str = "chat"  # modelserve extras: the model's kind, and its load state
    state: str = "ready"
    # modelserve extra, loaded chat models: "template" (their chat template renders tools) or
    # "system_prompt" (tools and the call syntax go into a system message)
    tools: str | None = None
    # modelserve extras of loaded speech, transcription and rerank models
    voices: list[str] | None = None
    multilingual: bool | None = None
    scoring: str | None = None  # rerank: cross-encoder | bi-encoder
    # modelserve extra, chat models: true when it takes image_url parts (it has an mmproj)
    vision: bool | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# -- admin ----------------------------------------------------------------------------------


class UnloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
