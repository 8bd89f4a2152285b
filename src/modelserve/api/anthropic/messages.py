"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's request as a turn of the chat
core, and the core's result and events as Anthropic's message and event stream."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from modelserve.api.anthropic.errors import stream_error
from modelserve.api.anthropic.protocol import (
    AnthropicError,
    Block,
    CountTokensRequest,
    ImageBlock,
    InputMessage,
    MessageBody,
    MessagesRequest,
    OtherBlock,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    TokenCount,
    ToolResultBlock,
    ToolUseBlock,
)
from modelserve.api.errors import APIError, bad_request
from modelserve.api.openapi import error_responses, streamed_or
from modelserve.chat import events as ev
from modelserve.chat.route import Source, count_prompt, serve
from modelserve.chat.turn import (
    Image,
    Message,
    Names,
    OutputFormat,
    Part,
    Sampling,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    Turn,
)
from modelserve.kinds.chat import ChatModel

router = APIRouter()

STOP_REASONS = {"tool_calls": "tool_use", "length": "max_tokens"}


ERRORS = error_responses(404, 429, 503, model=AnthropicError)


@router.post("/v1/messages", response_model=None,
             responses={200: streamed_or(MessageBody), **ERRORS})
async def create_message(req: MessagesRequest, request: Request) -> Response:
    return await serve(messages_turn(req), request, MessagesSurface(req), req.stream)


@router.post("/v1/messages/count_tokens", responses=ERRORS)
async def count_tokens(req: CountTokensRequest, request: Request) -> TokenCount:
    return TokenCount(input_tokens=await count_prompt(messages_turn(req), request))


# -- request -> turn -------------------------------------------------------------------------


def messages_turn(req: CountTokensRequest) -> Turn:
    messages: list[Message] = []
    if req.system is not None:
        system = req.system if isinstance(req.system, str) else \
            "\n\n".join(block.text for block in req.system)
        messages.append(Message("system", system, "system"))
    for i, msg in enumerate(req.messages):
        messages += _messages(msg, f"messages.{i}")
    choice = req.tool_choice
    sampling = Sampling()
    if isinstance(req, MessagesRequest):
        sampling = Sampling(
            max_tokens=req.max_tokens, stop=tuple(req.stop_sequences or ()),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p, top_k=req.top_k or 0)
    variables: dict[str, Any] = {}
    if req.thinking is not None:  # what Qwen3-style templates read
        variables["enable_thinking"] = req.thinking.type != "disabled"
    fmt = req.output_config.format if req.output_config is not None else None
    return Turn(
        model=req.model, messages=messages, sampling=sampling,
        tools=[_tool(t, i) for i, t in enumerate(req.tools or [])],
        tool_choice=None if choice is None else _choice(choice.type, choice.name),
        parallel_tool_calls=choice is None or not choice.disable_parallel_tool_use,
        output=None if fmt is None else OutputFormat(
            "json_schema", schema=fmt.schema_, where="output_config.format.schema"),
        variables=variables,
        names=Names(tool_choice_name="tool_choice.name", budget="max_tokens"))


def _choice(kind: str, name: str | None) -> ToolChoice:
    if kind == "tool":
        if not name:
            raise bad_request("tool_choice.name is required when its type is 'tool'.",
                              param="tool_choice.name")
        return ToolChoice("named", name)
    return ToolChoice({"any": "required"}.get(kind, kind))  # type: ignore[arg-type]


def _tool(tool: Any, i: int) -> Tool:
    if tool.type not in (None, "custom"):
        raise bad_request(f"tools.{i}: the tool type {tool.type!r} is Anthropic's own (run "
                          "on its servers); this server runs custom tools only.",
                          param=f"tools.{i}.type")
    return Tool(tool.name, tool.description, tool.input_schema or {"type": "object"},
                f"tools.{i}.input_schema")


def _messages(msg: InputMessage, where: str) -> list[Message]:
    """One Anthropic message as the core's: tool results become tool messages of their own
    (before the user's text), tool_use blocks an assistant's calls."""
    if isinstance(msg.content, str):
        return [Message(msg.role, msg.content, where)]
    out: list[Message] = []
    parts: list[Part] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(msg.content):
        at = f"{where}.content.{j}"
        if isinstance(block, TextBlock):
            parts.append(Text(block.text, at))
        elif isinstance(block, ImageBlock):
            source = block.source
            url = source.url if source.type == "url" else \
                f"data:{source.media_type};base64,{source.data}"  # type: ignore[union-attr]
            parts.append(Image(url, at))
        elif isinstance(block, ToolUseBlock):
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
        elif isinstance(block, ToolResultBlock):
            out.append(Message("tool", _result_text(block), at,
                               tool_call_id=block.tool_use_id))
        elif isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            continue  # earlier thoughts: the templates we serve drop them too
        else:
            assert isinstance(block, OtherBlock)
            raise bad_request(f"{at}: content blocks of type {block.type!r} are not supported "
                              "by this server.", param=f"{at}.type")
    if parts or calls or not out:
        content: str | list[Part] = parts if any(isinstance(p, Image) for p in parts) \
            else "\n".join(p.text for p in parts if isinstance(p, Text))
        out.append(Message(msg.role, content, where, tool_calls=calls))
    return out


def _result_text(block: ToolResultBlock) -> str:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n".join(b.text for b in content if isinstance(b, TextBlock))
    return f"Error: {text}" if block.is_error else text


# -- result and events -> Anthropic -------------------------------------------------------------


def _stop_reason(choice_reason: str, stop_sequence: str | None) -> str:
    if stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(choice_reason, "end_turn")


def _usage(usage: ev.Usage) -> dict[str, int]:
    # Anthropic counts the input read from the cache apart from the rest of it.
    return {"input_tokens": usage.prompt_tokens - usage.cached_tokens,
            "output_tokens": usage.completion_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached_tokens}


def _signature(thinking: str) -> str:
    """An opaque signature for a thinking block (clients send it back; we ignore it)."""
    return hashlib.sha256(thinking.encode()).hexdigest()


class MessagesSurface:
    cache_route = "messages"
    media_type = "text/event-stream"

    def __init__(self, req: MessagesRequest) -> None:
        self.req = req

    def cache_body(self) -> dict[str, Any]:
        return self.req.model_dump(mode="json", exclude={"stream"})

    def answer(self, result: ev.Result, model: ChatModel) -> bytes:
        choice = result.choices[0]
        content: list[dict[str, Any]] = []
        if choice.reasoning:
            content.append({"type": "thinking", "thinking": choice.reasoning,
                            "signature": _signature(choice.reasoning)})
        if choice.content:
            content.append({"type": "text", "text": choice.content})
        content += [{"type": "tool_use", "id": c.id, "name": c.name,
                     "input": _arguments(c.arguments)} for c in choice.tool_calls]
        return json.dumps({
            "id": f"msg_{result.id}", "type": "message", "role": "assistant",
            "model": result.model, "content": content,
            "stop_reason": _stop_reason(choice.finish_reason, choice.stop_sequence),
            "stop_sequence": choice.stop_sequence, "usage": _usage(result.usage)},
            ensure_ascii=False).encode()

    async def stream(self, source: Source, model: ChatModel) -> AsyncIterator[str]:
        yield _event("message_start", {"message": {
            "id": f"msg_{source.id}", "type": "message", "role": "assistant",
            "model": source.model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**_usage(ev.Usage(source.usage.prompt_tokens, 0)), "output_tokens": 0}}})
        yield _event("ping", {})
        blocks = _Blocks()
        try:
            async for event in source.events():
                for piece in blocks.on(event):
                    yield piece
        except APIError as exc:
            yield stream_error(exc)
            return
        yield _event("message_delta", {
            "delta": {"stop_reason": blocks.stop_reason, "stop_sequence": blocks.stop_sequence},
            "usage": _usage(source.usage)})
        yield _event("message_stop", {})


class _Blocks:
    """The content blocks of one streamed message: each opened, filled and closed in turn
    (Anthropic's blocks never interleave, and their indexes count from 0)."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None  # the open block's type
        self.thinking = ""
        self.stop_reason = "end_turn"
        self.stop_sequence: str | None = None

    def on(self, event: ev.Event) -> list[str]:
        match event:
            case ev.ReasoningDelta(text=text):
                out = self._open("thinking", {"thinking": "", "signature": ""})
                self.thinking += text
                return [*out, self._delta({"type": "thinking_delta", "thinking": text})]
            case ev.TextDelta(text=text) if text:
                return [*self._open("text", {"text": ""}),
                        self._delta({"type": "text_delta", "text": text})]
            case ev.CallStart(id=call_id, name=name):
                return self._open("tool_use", {"id": call_id, "name": name, "input": {}},
                                  new=True)
            case ev.CallArguments(arguments=arguments):
                return [self._delta({"type": "input_json_delta", "partial_json": arguments})]
            case ev.Finish(reason=reason, stop_sequence=stop):
                self.stop_reason, self.stop_sequence = _stop_reason(reason, stop), stop
                return self._close()
        return []

    def _open(self, kind: str, block: dict[str, Any], new: bool = False) -> list[str]:
        if self.kind == kind and not new:
            return []
        out = self._close()
        self.index += 1
        self.kind = kind
        return [*out, _event("content_block_start",
                             {"index": self.index, "content_block": {"type": kind, **block}})]

    def _close(self) -> list[str]:
        if self.kind is None:
            return []
        out = []
        if self.kind == "thinking":
            out.append(self._delta({"type": "signature_delta",
                                    "signature": _signature(self.thinking)}))
            self.thinking = ""
        out.append(_event("content_block_stop", {"index": self.index}))
        self.kind = None
        return out

    def _delta(self, delta: dict[str, Any]) -> str:
        return _event("content_block_delta", {"index": self.index, "delta": delta})


def _event(name: str, data: dict[str, Any]) -> str:
    """Anthropic's SSE: an `event:` line the SDK needs, and the type in the data too."""
    body = json.dumps({"type": name, **data}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {body}\n\n"


def _arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:  # cut short by max_tokens: the client still sees what there was
        return {}


__all__ = ["Block", "router"]
