"""POST /v1/chat/completions."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import APIRouter, Request, Response

from modelserve.api import leases, pipeline, sampling, streams
from modelserve.api.caching import CachePlan, cached_answer, replay_chat
from modelserve.api.chat_prompt import ChatPrompt, load_images, plan_chat_prompt
from modelserve.api.chunks import ChunkHead, chat_chunk
from modelserve.api.errors import APIError, bad_request
from modelserve.api.input_limits import check_messages, check_sampling
from modelserve.api.observe import context
from modelserve.api.openapi import error_responses, streamed_or
from modelserve.api.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    DeltaMessage,
    ImagePart,
)
from modelserve.api.reasoning import OutputParser, opens_thinking, parse_message
from modelserve.api.structured import output_grammar
from modelserve.api.tool_parser import OPEN, Event
from modelserve.api.tools import plan_tools
from modelserve.config import ImageSettings
from modelserve.config_sections import InputLimits
from modelserve.engine.generation import Generation
from modelserve.engine.sequence import MultimodalPrompt, TokenLogprob
from modelserve.kinds.chat import CHAT, ChatModel

router = APIRouter()

_MARK = "\x00content\x00"
_MARK_JSON = json.dumps(_MARK)


@router.post("/v1/chat/completions", response_model=None,
             responses={200: streamed_or(ChatCompletionResponse), **error_responses(404, 429, 503)})
async def create_chat_completion(req: ChatCompletionRequest, request: Request) -> Response:
    return await pipeline.serve(ChatRoute(req, request))


class ChatRoute(pipeline.Route[ChatCompletionRequest, ChatModel]):
    cache_route = "chat"
    planned: ChatPrompt
    prompt: MultimodalPrompt
    max_tokens: int

    def check_limits(self, limits: InputLimits) -> None:
        check_messages(self.req.messages, limits)
        check_sampling(self.req, limits, self.req.max_completion_tokens or self.req.max_tokens)
        self.grammar = output_grammar(self.req)
        self.tools = plan_tools(self.req)
        if self.tools is not None and self.tools.forced and self.grammar is not None:
            raise bad_request("A forced tool call (tool_choice required or named) cannot also "
                              "follow response_format, grammar or json_schema.",
                              param="tool_choice")

    async def acquire(self) -> ChatModel:
        return await leases.acquire_kind(self.request, self.req.model, CHAT)

    async def count(self, runtime: ChatModel) -> tuple[int, int]:
        # Admission counts the text tokens only (a marker stands where each image goes):
        # an image's token count is known only once encoded, and encoding is the work a
        # refused request must not cost. The image tokens are charged when the request
        # settles, as completion tokens are (api/admission.py).
        self.planned = plan_chat_prompt(runtime, self.req.messages, self._images(), self.tools,
                                        self.req.template_variables())
        # A template that opens the think block itself: the output starts inside it.
        tail = self.planned.text_tokens[-8:]
        self.thinking = opens_thinking(
            b"".join(runtime.token_bytes(t) for t in tail).decode("utf-8", errors="replace"))
        if self.tools is not None and self.tools.forced:
            self.grammar = self.tools.grammar(runtime.has_token(OPEN))
        self.max_tokens = self._budget(runtime, len(self.planned.text_tokens))
        return len(self.planned.text_tokens), self.max_tokens * self.req.n

    def deterministic(self) -> bool:
        # A remote image URL may serve other bytes next time: only data: URLs are part of
        # the key.
        req = self.req
        return (req.temperature == 0 or req.seed is not None) and not _remote_images(req)

    def replay(self, entry: bytes) -> Response:
        return cached_answer(entry, self.req.stream,
                             lambda body: replay_chat(body, self.req.usage_requested))

    async def prepare(self, runtime: ChatModel) -> None:
        counter = self.request.app.state.metrics.image_inputs

        def count(stage: str, n: int) -> None:
            counter.labels(self.req.model, stage).inc(n)

        self.prompt = await load_images(runtime, self.planned, self._images(), count)
        if self.prompt.images:  # image spans count as prompt tokens, in usage too
            self.max_tokens = self._budget(runtime, len(self.prompt.tokens))
            context(self.request).prompt_tokens = len(self.prompt.tokens)

    async def respond(self, runtime: ChatModel, plan: CachePlan) -> Response:
        req, request, prompt = self.req, self.request, self.prompt.tokens
        top = (req.top_logprobs or 0) if req.logprobs else None
        jobs = [(prompt, sampling.sampling_params(req, runtime, self.max_tokens, i, top,
                                                  self.grammar))
                for i in range(req.n)]
        gens = streams.submit_all(runtime, jobs, self.prompt.images)
        if req.stream:
            return streams.event_stream(_stream(req, runtime, gens, len(prompt),
                                                self.req.usage_requested, plan,
                                                self._parser))
        results = await streams.unless_disconnected(
            request, asyncio.gather(*(streams.collect(gen) for gen in gens)), gens)
        # Reasoning, and with tools the calls, are parsed out of the text (named: only offered
        # tools count), by the parser the stream uses.
        names = self.tools.names if self.tools is not None else None
        messages = [parse_message(r.text, names, self.thinking) for r in results]
        choices = [
            ChatChoice(
                index=i, message=messages[i],
                finish_reason=_finish(r.finish_reason, messages[i]),
                logprobs=ChoiceLogprobs(content=[sampling.chat_logprob_entry(runtime, lp)
                                                 for lp in r.logprobs])
                if req.logprobs else None)
            for i, r in enumerate(results)
        ]
        completion = sum(len(r.tokens) for r in results)
        context(request).completion_tokens = completion
        body = ChatCompletionResponse(
            model=req.model, choices=choices,
            usage=sampling.usage(len(prompt), completion,
                                 min(r.cached_tokens for r in results)),
        ).model_dump_json().encode()
        await plan.store(body)
        return Response(body, media_type="application/json")

    def _parser(self) -> OutputParser:
        return OutputParser(self.tools.names if self.tools is not None else None,
                            self.thinking)

    def _images(self) -> ImageSettings:
        settings: ImageSettings = self.request.app.state.settings.images
        return settings

    def _budget(self, runtime: ChatModel, prompt_len: int) -> int:
        req = self.req
        requested = req.max_completion_tokens or req.max_tokens
        param = "max_completion_tokens" if req.max_completion_tokens else "messages"
        return sampling.completion_budget(runtime, prompt_len, requested, param)


def _finish(reason: str | None, message: AssistantMessage) -> str | None:
    # A call cut short by max_tokens stays "length": the client must not run it.
    return "tool_calls" if message.tool_calls and reason == "stop" else reason


def _remote_images(req: ChatCompletionRequest) -> bool:
    return any(isinstance(part, ImagePart) and not part.image_url.url.startswith("data:")
               for msg in req.messages if isinstance(msg.content, list) for part in msg.content)


async def _stream(req: ChatCompletionRequest, runtime: ChatModel, gens: list[Generation],
                  prompt_tokens: int, include_usage: bool, plan: CachePlan,
                  new_parser: Callable[[], OutputParser]) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    head = ChunkHead(chunk_id, created, req.model, include_usage)

    def chunk(choices: list[ChatChunkChoice]) -> str:
        return chat_chunk(head, choices)

    # The hot path (one content chunk per token) fills a template made from the wire type
    # once, instead of building and dumping pydantic models for every token.
    templates = [chunk([ChatChunkChoice(index=i, delta=DeltaMessage(content=_MARK))])
                 .split(_MARK_JSON) for i in range(len(gens))]

    for i in range(len(gens)):
        yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
    completion, cached = 0, prompt_tokens
    finishes = [""] * len(gens)
    # Text goes through a parser that holds back what may be a call or a think marker and
    # sends calls as tool_calls deltas, thoughts as reasoning_content; while it passes text
    # on unchanged, the token's chunk is the plain one (logprobs riding on it), otherwise
    # logprobs ride on chunks of their own.
    parsers = [new_parser() for _ in gens]
    try:
        async for index, out in streams.merge(gens):
            streams.raise_if_failed(out)
            completion += len(out.token_ids)
            events = parsers[index].feed(out.text)
            logprobs = _logprobs(runtime, out.logprobs) if out.logprobs and req.logprobs \
                else None
            if _unchanged(events, out.text):
                if logprobs is not None:
                    yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(content=out.text),
                                                 logprobs=logprobs)])
                elif out.text:
                    before, after = templates[index]
                    yield before + json.dumps(out.text, ensure_ascii=False) + after
            else:
                for piece in _event_chunks(index, events, chunk):
                    yield piece
                if logprobs is not None:
                    yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(),
                                                 logprobs=logprobs)])
            if out.finish_reason is not None:
                for piece in _event_chunks(index, parsers[index].finish(), chunk):
                    yield piece
                cached = min(cached, out.cached_tokens)
                finishes[index] = _finish(out.finish_reason, parsers[index].message()) or ""
                yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(),
                                             finish_reason=finishes[index])])
    except APIError as exc:
        yield exc.sse()
    finally:
        plan.ctx.completion_tokens = completion
    usage = sampling.usage(prompt_tokens, completion, cached)
    if include_usage:
        yield chat_chunk(head, [], usage)
    yield streams.sse("[DONE]")
    if not req.logprobs and all(f in ("stop", "length", "tool_calls") for f in finishes):
        # What was streamed, call ids included: a replay sends the same calls.
        await plan.store(ChatCompletionResponse(
            id=chunk_id, created=created, model=req.model, usage=usage,
            choices=[ChatChoice(index=i, message=parser.message(), finish_reason=finishes[i])
                     for i, parser in enumerate(parsers)],
        ).model_dump_json().encode())


def _unchanged(events: list[Event], text: str) -> bool:
    """The parser passed the text on as content, as it is."""
    if not events:
        return not text
    return len(events) == 1 and events[0].content == text


def _event_chunks(index: int, events: list[Event],
                  chunk: Callable[[list[ChatChunkChoice]], str]) -> Iterator[str]:
    for event in events:
        delta = DeltaMessage(tool_calls=[event.call]) if event.call is not None \
            else DeltaMessage(reasoning_content=event.reasoning) if event.reasoning is not None \
            else DeltaMessage(content=event.content)
        yield chunk([ChatChunkChoice(index=index, delta=delta)])


def _logprobs(runtime: ChatModel, logprobs: list[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(content=[sampling.chat_logprob_entry(runtime, lp) for lp in logprobs])
