"""POST /v1/chat/completions."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response

from modelserve.api import admission, leases, sampling, streams
from modelserve.api.caching import CachePlan, cached_answer, replay_chat
from modelserve.api.chat_prompt import render_chat_prompt
from modelserve.api.errors import APIError
from modelserve.api.input_limits import check_messages, check_sampling, limits_of
from modelserve.api.observe import context
from modelserve.api.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    DeltaMessage,
    ImagePart,
)
from modelserve.kinds.chat import CHAT
from modelserve.runtimes.llama_chat import Generation, LlamaChatRuntime

router = APIRouter()

_MARK = "\x00content\x00"
_MARK_JSON = json.dumps(_MARK)


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(req: ChatCompletionRequest, request: Request) -> Response:
    limits = limits_of(request)
    check_messages(req.messages, limits)
    check_sampling(req, limits, req.max_completion_tokens or req.max_tokens)
    runtime = await leases.acquire_kind(request, req.model, CHAT)
    rendered = await render_chat_prompt(runtime, req.messages,
                                        request.app.state.settings.images)
    prompt = rendered.tokens  # image spans count as prompt tokens, in usage too
    requested = req.max_completion_tokens or req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens else "messages"
    max_tokens = sampling.completion_budget(runtime, len(prompt), requested, param)
    await admission.admit(request, len(prompt), max_tokens * req.n)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    # A remote image URL may serve other bytes next time: only data: URLs are part of the key.
    deterministic = (req.temperature == 0 or req.seed is not None) and not _remote_images(req)
    plan = CachePlan.start(request, "chat", req, deterministic)
    hit = await plan.lookup()
    if hit is not None:
        return cached_answer(hit, req.stream, lambda body: replay_chat(body, include_usage))
    top = (req.top_logprobs or 0) if req.logprobs else None
    jobs = [(prompt, sampling.sampling_params(req, runtime, max_tokens, i, top))
            for i in range(req.n)]
    gens = streams.submit_all(runtime, jobs, rendered.images)
    if req.stream:
        return streams.event_stream(_stream(req, runtime, gens, len(prompt), include_usage, plan))
    results = await streams.unless_disconnected(
        request, asyncio.gather(*(streams.collect(gen) for gen in gens)), gens)
    choices = [
        ChatChoice(
            index=i, message=AssistantMessage(content=r.text), finish_reason=r.finish_reason,
            logprobs=ChoiceLogprobs(content=[sampling.chat_logprob_entry(runtime, lp)
                                             for lp in r.logprobs]) if req.logprobs else None)
        for i, r in enumerate(results)
    ]
    completion = sum(len(r.tokens) for r in results)
    context(request).completion_tokens = completion
    body = ChatCompletionResponse(
        model=req.model, choices=choices,
        usage=sampling.usage(len(prompt), completion, min(r.cached_tokens for r in results)),
    ).model_dump_json().encode()
    await plan.store(body)
    return Response(body, media_type="application/json")


def _remote_images(req: ChatCompletionRequest) -> bool:
    return any(isinstance(part, ImagePart) and not part.image_url.url.startswith("data:")
               for msg in req.messages if isinstance(msg.content, list) for part in msg.content)


async def _stream(req: ChatCompletionRequest, runtime: LlamaChatRuntime, gens: list[Generation],
                  prompt_tokens: int, include_usage: bool, plan: CachePlan
                  ) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(choices: list[ChatChunkChoice]) -> str:
        body = ChatCompletionChunk(id=chunk_id, created=created, model=req.model,
                                   choices=choices).model_dump()
        for i, choice in enumerate(choices):
            body["choices"][i]["delta"] = choice.delta.model_dump(exclude_none=True)
        if not include_usage:
            del body["usage"]
        return streams.sse_json(body)

    # The hot path (one content chunk per token) fills a template made from the wire type
    # once, instead of building and dumping pydantic models for every token.
    templates = [chunk([ChatChunkChoice(index=i, delta=DeltaMessage(content=_MARK))])
                 .split(_MARK_JSON) for i in range(len(gens))]

    for i in range(len(gens)):
        yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
    completion, cached = 0, prompt_tokens
    texts, finishes = [""] * len(gens), [""] * len(gens)
    try:
        async for index, out in streams.merge(gens):
            streams.raise_if_failed(out)
            completion += len(out.token_ids)
            texts[index] += out.text
            if out.logprobs and req.logprobs:
                logprobs = ChoiceLogprobs(content=[sampling.chat_logprob_entry(runtime, lp)
                                                   for lp in out.logprobs])
                yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(content=out.text),
                                             logprobs=logprobs)])
            elif out.text:
                head, tail = templates[index]
                yield head + json.dumps(out.text, ensure_ascii=False) + tail
            if out.finish_reason is not None:
                cached = min(cached, out.cached_tokens)
                finishes[index] = out.finish_reason
                yield chunk([ChatChunkChoice(index=index, delta=DeltaMessage(),
                                             finish_reason=out.finish_reason)])
    except APIError as exc:
        yield exc.sse()
    finally:
        plan.ctx.completion_tokens = completion
    usage = sampling.usage(prompt_tokens, completion, cached)
    if include_usage:
        body = ChatCompletionChunk(id=chunk_id, created=created, model=req.model, choices=[],
                                   usage=usage).model_dump()
        yield streams.sse_json(body)
    yield streams.sse("[DONE]")
    if not req.logprobs and all(f in ("stop", "length") for f in finishes):
        await plan.store(ChatCompletionResponse(
            id=chunk_id, created=created, model=req.model, usage=usage,
            choices=[ChatChoice(index=i, message=AssistantMessage(content=text),
                                finish_reason=finishes[i]) for i, text in enumerate(texts)],
        ).model_dump_json().encode())
