"""POST /v1/chat/completions: OpenAI Chat's request as a turn of the chat core (chat/), and
the core's result and events as OpenAI's JSON and chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from modelserve.api import sampling
from modelserve.api.caching import NO_EFFECT
from modelserve.api.chunks import ChunkHead, chat_chunk
from modelserve.api.errors import APIError, bad_request
from modelserve.api.openapi import error_responses, streamed_or
from modelserve.api.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChoiceLogprobs,
    DeltaMessage,
    TextPart,
)
from modelserve.api.protocol_output import OutputControls
from modelserve.api.protocol_tools import (
    DeltaFunction,
    DeltaToolCall,
    FunctionCall,
    NamedToolChoice,
    ToolCall,
)
from modelserve.api.protocol_tools import Tool as ChatTool
from modelserve.api.streams import sse
from modelserve.chat import events as ev
from modelserve.chat.route import Source, serve
from modelserve.chat.turn import (
    Image,
    Message,
    Names,
    OutputFormat,
    Part,
    Text,
    Tool,
    ToolChoice,
    Turn,
)
from modelserve.chat.turn import ToolCall as CoreCall
from modelserve.engine.sequence import TokenLogprob
from modelserve.kinds.chat import ChatModel

router = APIRouter()

_MARK = "\x00content\x00"
_MARK_JSON = json.dumps(_MARK)


@router.post("/v1/chat/completions", response_model=None,
             responses={200: streamed_or(ChatCompletionResponse), **error_responses(404, 429, 503)})
async def create_chat_completion(req: ChatCompletionRequest, request: Request) -> Response:
    return await serve(chat_turn(req), request, ChatSurface(req), req.stream)


# -- request -> turn -------------------------------------------------------------------------


def chat_turn(req: ChatCompletionRequest) -> Turn:
    choice = req.tool_choice
    return Turn(
        model=req.model, messages=[chat_message(m, i) for i, m in enumerate(req.messages)],
        sampling=sampling.sampling(req, req.max_completion_tokens or req.max_tokens,
                                   (req.top_logprobs or 0) if req.logprobs else None,
                                   req.prediction.text() if req.prediction else None),
        tools=[_tool(t, i) for i, t in enumerate(req.tools or [])],
        tool_choice=None if choice is None else
        ToolChoice("named", choice.function.name) if isinstance(choice, NamedToolChoice)
        else ToolChoice(choice),
        parallel_tool_calls=req.parallel_tool_calls, output=output_format(req),
        variables=req.template_variables(),
        names=Names(budget="max_completion_tokens" if req.max_completion_tokens else "messages"))


def _tool(tool: ChatTool, i: int) -> Tool:
    given = tool.function.model_dump(exclude_none=True)
    return Tool(tool.function.name, tool.function.description, tool.function.parameters,
                f"tools[{i}].function.parameters",
                {k: v for k, v in given.items() if k not in ("name", "description",
                                                             "parameters")})


def output_format(req: OutputControls) -> OutputFormat | None:
    """`response_format`, or llama.cpp's `grammar` / `json_schema` extras: one of them."""
    fmt = req.response_format
    asked = [name for name, value in (("response_format", fmt and fmt.type != "text"),
                                      ("grammar", req.grammar), ("json_schema", req.json_schema))
             if value]
    if len(asked) > 1:
        raise bad_request(f"Send one way of constraining the output, not {' and '.join(asked)}.",
                          param=asked[1])
    if fmt is not None and fmt.type == "json_object":
        return OutputFormat("json_object")
    if fmt is not None and fmt.type == "json_schema":
        assert fmt.json_schema is not None
        return OutputFormat("json_schema", schema=fmt.json_schema.schema_ or {},
                            where="response_format.json_schema")
    if req.json_schema:
        return OutputFormat("json_schema", schema=req.json_schema, where="json_schema")
    if req.grammar:
        return OutputFormat("grammar", grammar=req.grammar, where="grammar")
    return None


def chat_message(msg: ChatMessage, i: int) -> Message:
    where = f"messages[{i}]"
    content: str | list[Part]
    if isinstance(msg.content, list):
        content = [Text(p.text, f"{where}.content[{j}].text") if isinstance(p, TextPart)
                   else Image(p.image_url.url, f"{where}.content[{j}].image_url")
                   for j, p in enumerate(msg.content)]
    else:
        content = msg.content or ""
    known = {"role", "content", "name", "tool_call_id", "tool_calls"}
    return Message(
        # "developer" is OpenAI's new name for "system"; templates only know the latter.
        role="system" if msg.role == "developer" else msg.role, content=content, where=where,
        tool_calls=[CoreCall(c.id, c.function.name, c.function.arguments)
                    for c in msg.tool_calls or []],
        tool_call_id=msg.tool_call_id, name=msg.name,
        extra={k: v for k, v in msg.model_dump(exclude_none=True).items() if k not in known})


# -- result and events -> OpenAI ----------------------------------------------------------------


class ChatSurface:
    cache_route = "chat"
    media_type = "text/event-stream"

    def __init__(self, req: ChatCompletionRequest) -> None:
        self.req = req

    def cache_body(self) -> dict[str, Any]:
        return self.req.model_dump(mode="json", exclude=NO_EFFECT)

    def answer(self, result: ev.Result, model: ChatModel) -> bytes:
        choices = [ChatChoice(index=c.index, message=_assistant(c), finish_reason=c.finish_reason,
                              logprobs=_logprobs(model, c.logprobs or [])
                              if self.req.logprobs else None)
                   for c in result.choices]
        reasoning = sampling.reasoning_tokens(model, (c.reasoning for c in result.choices),
                                              result.usage.completion_tokens)
        return ChatCompletionResponse(
            id=f"chatcmpl-{result.id}", created=result.created, model=result.model,
            choices=choices, usage=sampling.usage(result.usage, reasoning)
        ).model_dump_json().encode()

    async def stream(self, source: Source, model: ChatModel) -> AsyncIterator[str]:
        req = self.req
        head = ChunkHead(f"chatcmpl-{source.id}", source.created, source.model,
                         req.usage_requested)

        def chunk(choices: list[ChatChunkChoice]) -> str:
            return chat_chunk(head, choices)

        # The hot path (one content chunk per token) fills a template made from the wire type
        # once, instead of building and dumping pydantic models for every token.
        templates = [chunk([ChatChunkChoice(index=i, delta=DeltaMessage(content=_MARK))])
                     .split(_MARK_JSON) for i in range(req.n)]
        for i in range(req.n):
            yield chunk([ChatChunkChoice(index=i,
                                         delta=DeltaMessage(role="assistant", content=""))])
        thoughts = [""] * req.n  # each choice's reasoning, for the usage chunk's count
        try:
            async for event in source.events():
                if isinstance(event, ev.TextDelta) and event.logprobs is None:
                    if event.text:
                        before, after = templates[event.index]
                        yield before + json.dumps(event.text, ensure_ascii=False) + after
                elif req.logprobs or not isinstance(event, ev.Logprobs):
                    if isinstance(event, ev.ReasoningDelta):
                        thoughts[event.index] += event.text
                    yield chunk([_chunk_choice(event, model if req.logprobs else None)])
        except APIError as exc:
            yield exc.sse()
        if req.usage_requested:
            counts = source.usage
            reasoning = sampling.reasoning_tokens(model, thoughts, counts.completion_tokens)
            yield chat_chunk(head, [], sampling.usage(counts, reasoning))
        yield sse("[DONE]")


def _assistant(choice: ev.Choice) -> AssistantMessage:
    calls = [ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
             for c in choice.tool_calls]
    return AssistantMessage(content=choice.content, reasoning_content=choice.reasoning,
                            tool_calls=calls or None)


def _logprobs(model: ChatModel, logprobs: list[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(content=[sampling.chat_logprob_entry(model, lp) for lp in logprobs])


def _delta(event: ev.Event) -> DeltaMessage:
    match event:
        case ev.TextDelta(text=text):
            return DeltaMessage(content=text or None)
        case ev.ReasoningDelta(text=text):
            return DeltaMessage(reasoning_content=text)
        case ev.CallStart(call=n, id=call_id, name=name):
            return DeltaMessage(tool_calls=[DeltaToolCall(
                index=n, id=call_id, type="function",
                function=DeltaFunction(name=name, arguments=""))])
        case ev.CallArguments(call=n, arguments=arguments):
            return DeltaMessage(tool_calls=[DeltaToolCall(
                index=n, function=DeltaFunction(arguments=arguments))])
    return DeltaMessage()  # Logprobs, Finish


def _chunk_choice(event: ev.Event, model: ChatModel | None) -> ChatChunkChoice:
    logprobs = getattr(event, "logprobs", None)
    return ChatChunkChoice(
        index=event.index, delta=_delta(event),
        logprobs=_logprobs(model, logprobs) if model is not None and logprobs else None,
        finish_reason=event.reason if isinstance(event, ev.Finish) else None)
