"""OpenAI Responses wire types: the request of `POST /v1/responses`, its input items and
their content parts. Unknown fields are accepted and ignored, as on the other surfaces; the
fields this server knows but cannot honour are refused by name (`refuse_unhonoured`), and
so are item, part and tool types it does not run (convert.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from modelserve.api.errors import bad_request
from modelserve.api.protocol import NullMeansDefault
from modelserve.api.protocol_tools import NAME_PATTERN

# Unknown fields accepted, `"field": null` taken as "not set" (what the SDK sends), as on
# OpenAI's other routes.
Lenient = NullMeansDefault


# -- content parts --------------------------------------------------------------------------


class InputText(Lenient):
    type: Literal["input_text"]
    text: str


class InputImage(Lenient):
    type: Literal["input_image"]
    image_url: str | None = None  # a data: URL, or http(s) when the server allows it
    file_id: str | None = None  # OpenAI's Files API: not here
    detail: Literal["auto", "low", "high", "original"] = "auto"


class OutputText(Lenient):
    """An earlier answer's text, given back in an assistant message."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(Lenient):
    type: Literal["refusal"]
    refusal: str


class OtherPart(Lenient):
    """input_file, input_audio, ...: refused by name, not dropped."""

    type: str


def _kind(known: set[str], default: str | None = None) -> Any:
    """The union member by `type` (unknown types: the `Other` one, refused by name later).
    Tags have a dot so that error paths (errors.validation_message) leave them out."""
    def pick(value: Any) -> str:
        kind = value.get("type", default) if isinstance(value, dict) else \
            getattr(value, "type", default)
        return f"as.{kind if isinstance(kind, str) and kind in known else 'other'}"
    return pick


_PARTS = {"input_text", "input_image", "output_text", "refusal"}
Part = Annotated[
    Annotated[InputText, Tag("as.input_text")] | Annotated[InputImage, Tag("as.input_image")]
    | Annotated[OutputText, Tag("as.output_text")] | Annotated[Refusal, Tag("as.refusal")]
    | Annotated[OtherPart, Tag("as.other")], Discriminator(_kind(_PARTS))]


# -- input items ----------------------------------------------------------------------------


class MessageItem(Lenient):
    """A message: `{"role", "content"}` as OpenAI's easy form, or with `type: "message"`."""

    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    status: str | None = None


class FunctionCallItem(Lenient):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    status: str | None = None


class FunctionCallOutputItem(Lenient):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    output: str | list[Part]
    status: str | None = None


class ReasoningItem(Lenient):
    """An earlier answer's reasoning given back: skipped (the templates drop it too)."""

    type: Literal["reasoning"]


class OtherItem(Lenient):
    """item_reference, hosted tools' calls, ...: refused by name."""

    type: str


_ITEMS = {"message", "function_call", "function_call_output", "reasoning"}
Item = Annotated[
    Annotated[MessageItem, Tag("as.message")] | Annotated[FunctionCallItem, Tag("as.function_call")]
    | Annotated[FunctionCallOutputItem, Tag("as.function_call_output")]
    | Annotated[ReasoningItem, Tag("as.reasoning")] | Annotated[OtherItem, Tag("as.other")],
    Discriminator(_kind(_ITEMS, default="message"))]
ITEM: TypeAdapter[Any] = TypeAdapter(Item)


# -- tools, text format, reasoning ----------------------------------------------------------


class FunctionTool(Lenient):
    type: Literal["function"]
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class OtherTool(Lenient):
    """web_search, file_search, code_interpreter, mcp, ...: OpenAI runs those itself."""

    type: str


ToolDef = Annotated[Annotated[FunctionTool, Tag("as.function")]
                    | Annotated[OtherTool, Tag("as.other")], Discriminator(_kind({"function"}))]


class FunctionChoice(Lenient):
    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormat(Lenient):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> TextFormat:
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError("type 'json_schema' needs a 'name' and a 'schema'")
        return self


class TextConfig(Lenient):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(Lenient):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(Lenient):
    # Obfuscation pads stream events against length side channels on OpenAI's network; a
    # local server sends none, which changes nothing a client reads.
    include_obfuscation: bool | None = None


# -- the request ----------------------------------------------------------------------------


class CountRequest(Lenient):
    """What `POST /v1/responses/input_tokens` reads (the input side of a request)."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | dict[str, Any] | None \
        = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    previous_response_id: str | None = None
    grammar: str | None = Field(None, description="llama.cpp extra: a GBNF grammar")


class ResponsesRequest(CountRequest):
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    metadata: dict[str, str] | None = None
    store: bool = True
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    background: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # OpenAI's limits, so that what works here works there.
        if value is not None and len(value) > 16:
            raise ValueError("at most 16 keys")
        for key, text in (value or {}).items():
            if len(key) > 64 or len(text) > 512:
                raise ValueError("keys are at most 64 characters and values 512")
        return value


# Fields OpenAI's API has that this server cannot honour (it runs no conversations, stored
# prompts, background jobs, moderation or context compaction): refused when set.
UNHONOURED = ("conversation", "prompt", "context_management", "moderation", "image",
              "background_options", "prompt_cache_options")


def refuse_unhonoured(req: ResponsesRequest) -> None:
    """A 400 naming the first field set to something this server would have to ignore."""
    extra = req.model_extra or {}
    for name in UNHONOURED:
        if extra.get(name) is not None:
            raise bad_request(f"{name} is not supported by this server.", param=name)
    if extra.get("prompt_cache_retention") not in (None, "in_memory"):
        raise bad_request("prompt_cache_retention: prompts are cached in memory only here; "
                          "send 'in_memory'.", param="prompt_cache_retention")
    if req.truncation == "auto":
        raise bad_request("truncation 'auto' (dropping input to fit the context) is not "
                          "supported; send 'disabled'.", param="truncation")
    if req.include:
        raise bad_request(f"include {req.include[0]!r} is not supported by this server.",
                          param="include")
    if req.service_tier not in (None, "auto", "default"):
        raise bad_request(f"service_tier {req.service_tier!r} is not offered by this server; "
                          "send 'auto' or 'default'.", param="service_tier")
    if req.top_logprobs:
        raise bad_request("top_logprobs is not supported on /v1/responses (use "
                          "/v1/chat/completions).", param="top_logprobs")
    if req.background:
        raise bad_request("background responses are not supported by this server.",
                          param="background")
    if req.max_tool_calls is not None:
        raise bad_request("max_tool_calls is not supported by this server.",
                          param="max_tool_calls")
    reasoning = req.reasoning
    if reasoning is not None and (reasoning.summary or reasoning.generate_summary):
        raise bad_request("reasoning summaries are not written by this server; the model's "
                          "reasoning comes back whole as reasoning_text content.",
                          param="reasoning.summary")
    if req.text is not None and req.text.verbosity not in (None, "medium"):
        raise bad_request("text.verbosity is not supported by this server.",
                          param="text.verbosity")
