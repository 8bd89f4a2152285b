"""POST /v1/chat/completions."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from modelserve.api import generation as g
from modelserve.api.chat_prompt import render_chat_prompt
from modelserve.api.errors import APIError
from modelserve.api.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    DeltaMessage,
)
from modelserve.runtimes.llama_chat import Generation, LlamaChatRuntime

router = APIRouter()

_MARK = "\x00content\x00"
_MARK_JSON = json.dumps(_MARK)


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(req: ChatCompletionRequest, request: Request
                                 ) -> ChatCompletionResponse | StreamingResponse:
    runtime = g.get_runtime(request.app.state.registry, req.model)
    rendered = await render_chat_prompt(runtime, req.messages,
                                        request.app.state.settings.images)
    prompt = rendered.tokens  # image spans count as prompt tokens, in usage too
    requested = req.max_completion_tokens or req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens else "messages"
    max_tokens = g.completion_budget(runtime, len(prompt), requested, param)
    top = (req.top_logprobs or 0) if req.logprobs else None
    jobs = [(prompt, g.sampling_params(req, runtime, max_tokens, i, top)) for i in range(req.n)]
    gens = g.submit_all(runtime, jobs, rendered.images)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_stream(req, runtime, gens, len(prompt), include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    results = await g.unless_disconnected(
        request, asyncio.gather(*(g.collect(gen) for gen in gens)), gens)
    choices = [
        ChatChoice(
            index=i, message=AssistantMessage(content=r.text), finish_reason=r.finish_reason,
            logprobs=ChoiceLogprobs(content=[g.chat_logprob_entry(runtime, lp)
                                             for lp in r.logprobs]) if req.logprobs else None)
        for i, r in enumerate(results)
    ]
    completion = sum(len(r.tokens) for r in results)
    return ChatCompletionResponse(
        model=req.model, choices=choices,
        usage=g.usage(len(prompt), completion, min(r.cached_tokens for r in results)))


async def _stream(req: ChatCompletionRequest, runtime: LlamaChatRuntime, gens: list[Generation],
                  prompt_tokens: int, include_usage: bool) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(choices: list[ChatChunkChoice]) -> str:
        body = ChatCompletionChunk(id=chunk_id, created=created, model=req.model,
                                   choices=choices).model_dump()
        for i, choice in enumerate(choices):
            body["choices"][i]["delta"] = choice.delta.model_dump(exclude_none=True)
        if not include_usage:
            del body["usage"]
        return g.sse_json(body)

    # The hot path (one content chunk per token) fills a template made from the wire type
    # once, instead of building and dumping pydantic models for every token.
    templates = [chunk([ChatChunkChoice(index=i, delta=DeltaMessage(content=_MARK))])
                 .split(_MARK_JSON) for i in range(len(gens))]

    for i in range(len(gens)):
        yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
    completion, cached = 0, prompt_tokens
    try:
        async for index, out in g.merge(gens):
            g.raise_if_failed(out)
            completion += len(out.token_ids)
            if out.logprobs and req.logprobs:
                logprobs = ChoiceLogprobs(content=[g.chat_logprob_entry(runtime, lp)
                                                   for lp in out.logprobs])
                yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(content=out.text),
                                             logprobs=logprobs)])
            elif out.text:
                head, tail = templates[index]
                yield head + json.dumps(out.text, ensure_ascii=False) + tail
            if out.finish_reason is not None:
                cached = min(cached, out.cached_tokens)
                yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(),
                                             finish_reason=out.finish_reason)])
    except APIError as exc:
        yield exc.sse()
    if include_usage:
        body = ChatCompletionChunk(id=chunk_id, created=created, model=req.model, choices=[],
                                   usage=g.usage(prompt_tokens, completion, cached)).model_dump()
        yield g.sse_json(body)
    yield g.sse("[DONE]")

