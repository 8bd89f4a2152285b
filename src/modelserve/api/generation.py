"""Shared by chat and completions: request -> sampling params, n choices, streams, disconnects."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from fastapi import Request
from fastapi.responses import StreamingResponse

from modelserve.api.errors import APIError, bad_request, model_not_found
from modelserve.api.observe import RequestContext, context
from modelserve.api.protocol import SamplingFields, TokenLogprobEntry, TopLogprob, Usage
from modelserve.engine.scheduler import QueueFull
from modelserve.engine.sequence import ImageSpan, SamplingParams, StepOutput, TokenLogprob
from modelserve.kinds import ModelKind, ModelRuntime
from modelserve.registry import (
    Lease,
    ModelNotFound,
    ModelRegistry,
    ModelState,
    ModelUnavailable,
    Runtime,
)
from modelserve.runtimes.embeddings import EmbeddingRuntime
from modelserve.runtimes.llama_chat import Generation, LlamaChatRuntime
from modelserve.security import LimitsUnavailable, RateLimited, RateLimiter

T = TypeVar("T")
R = TypeVar("R", bound=ModelRuntime)


async def acquire(request: Request, name: str) -> Runtime:
    """The model's runtime, held for this request (the lease ends with the response)."""
    return (await _lease(request, name)).runtime


async def acquire_kind(request: Request, name: str, kind: ModelKind[R],
                       use: str | None = None) -> R:
    """The model's runtime if the model is of `kind` (else a 400 naming what it is), held
    for this request. `use` overrides what the error says the kind is for."""
    lease = await _lease(request, name)
    actual = lease.loaded.spec.kind  # the spec this runtime was built from
    if actual != kind.name:
        raise wrong_kind(name, actual, use or kind.use)
    # The registry built this runtime with `kind.build`, so it is the kind's runtime class.
    return cast(R, lease.runtime)


async def _lease(request: Request, name: str) -> Lease:
    ctx = context(request)
    ctx.model = name
    registry: ModelRegistry = request.app.state.registry
    try:
        lease = await registry.acquire(name)
    except ModelNotFound:
        raise model_not_found(name) from None
    except ModelUnavailable as exc:
        loading = exc.state is ModelState.LOADING
        raise APIError(503, f"The model '{name}' is not available: {exc}. Please retry shortly.",
                       type="server_error", param="model",
                       code="model_loading" if loading else "model_unavailable",
                       headers={"Retry-After": "5" if loading else "10"}) from None
    ctx.leases.append(lease)
    return lease


async def admit(request: Request, prompt_tokens: int, max_new_tokens: int) -> None:
    """Count the request against its key's limits (429 when over), now that its size is
    known; what it really used is settled when the response ends."""
    ctx = context(request)
    ctx.prompt_tokens = prompt_tokens
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is None or ctx.key is None or ctx.model is None:
        return
    try:
        admission = await limiter.admit(ctx.key, ctx.model, prompt_tokens, max_new_tokens)
    except RateLimited as exc:
        request.app.state.metrics.rate_limited.labels(exc.limit).inc()
        raise rate_limited(exc) from None
    except LimitsUnavailable as exc:
        raise limits_unavailable(exc) from None
    ctx.headers.update(admission.headers)
    ctx.limits_unenforced |= not admission.enforced

    async def settle(done: RequestContext) -> None:
        await limiter.settle(admission, done.completion_tokens or 0)

    ctx.on_finish.append(settle)


def rate_limited(exc: RateLimited) -> APIError:
    # OpenAI names the exhausted limit in `type`: "requests" or "tokens".
    kind = exc.limit if exc.limit in ("requests", "tokens") else "rate_limit_error"
    return APIError(429, str(exc), type=kind, code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(math.ceil(exc.retry_after), 1))})


def limits_unavailable(exc: LimitsUnavailable) -> APIError:
    """fail_closed with the limits' storage down: the request cannot be checked, so it is
    refused until the storage answers again."""
    return APIError(503, "Rate limits cannot be checked right now (their storage is "
                    "unavailable). Please retry shortly.", type="server_error",
                    code="service_unavailable",
                    headers={"Retry-After": str(max(math.ceil(exc.retry_after), 1))})


def wrong_kind(name: str, kind: str, wanted: str) -> APIError:
    return bad_request(f"The model '{name}' is a {kind} model and cannot be used for {wanted}.",
                       param="model", code="model_not_supported")


def check_token_ids(runtime: LlamaChatRuntime | EmbeddingRuntime, tokens: list[int],
                    param: str) -> None:
    bad = next((t for t in tokens if not 0 <= t < runtime.n_vocab), None)
    if bad is not None:
        raise bad_request(f"token id {bad} is out of range [0, {runtime.n_vocab})", param=param)


def completion_budget(runtime: LlamaChatRuntime, prompt_len: int, requested: int | None,
                      param: str) -> int:
    """Max new tokens for a prompt; an over-long prompt or request is a 400 with the counts."""
    limit = runtime.context_size
    if prompt_len >= limit or (requested is not None and prompt_len + requested > limit):
        asked = prompt_len + (requested or 0)
        raise APIError(
            400,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{asked} tokens ({prompt_len} in the prompt, {requested or 0} for the completion). "
            "Please reduce the length of the prompt or the completion.",
            param=param, code="context_length_exceeded")
    return requested if requested is not None else limit - prompt_len


def sampling_params(req: SamplingFields, runtime: LlamaChatRuntime, max_tokens: int,
                    choice: int, top_logprobs: int | None) -> SamplingParams:
    bias = tuple((int(k), float(v)) for k, v in (req.logit_bias or {}).items())
    check_token_ids(runtime, [t for t, _ in bias], "logit_bias")
    return SamplingParams(
        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
        min_p=req.min_p, seed=None if req.seed is None else req.seed + choice,
        stop=tuple(req.stop or ()), presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, repeat_penalty=req.repeat_penalty,
        logit_bias=bias, logprobs=top_logprobs is not None, top_logprobs=top_logprobs or 0)


def submit_all(runtime: LlamaChatRuntime, jobs: list[tuple[list[int], SamplingParams]],
               images: list[ImageSpan] | None = None) -> list[Generation]:
    """Queue every choice or none: a full queue cancels what was queued and answers 429."""
    started: list[Generation] = []
    try:
        for prompt, params in jobs:
            started.append(runtime.submit(prompt, params, images))
    except QueueFull:
        for gen in started:
            gen.cancel()
        raise APIError(429, "The server is busy: too many requests are waiting for this model. "
                       "Please retry shortly.", type="rate_limit_error", code="queue_full",
                       headers={"Retry-After": "1"}) from None
    return started


@dataclass
class ChoiceResult:
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0


async def collect(gen: Generation) -> ChoiceResult:
    result = ChoiceResult()
    async for out in gen:
        result.text += out.text
        result.tokens += out.token_ids
        result.logprobs += out.logprobs
        result.prompt_tokens = out.prompt_tokens
        result.cached_tokens = out.cached_tokens
        if out.finish_reason is not None:
            raise_if_failed(out)
            result.finish_reason = out.finish_reason
    return result


def raise_if_failed(out: StepOutput) -> None:
    if out.finish_reason == "error":
        raise APIError(500, f"generation failed: {out.error}", type="server_error")


async def merge(gens: list[Generation]) -> AsyncIterator[tuple[int, StepOutput]]:
    """Interleave the outputs of several choices as they come, tagged with their index."""
    if len(gens) == 1:  # the common case needs no tasks and no second queue
        try:
            async for out in gens[0]:
                yield 0, out
        finally:
            gens[0].cancel()
        return
    queue: asyncio.Queue[tuple[int, StepOutput | None]] = asyncio.Queue()

    async def pump(index: int, gen: Generation) -> None:
        try:
            async for out in gen:
                await queue.put((index, out))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        for gen in gens:
            gen.cancel()


async def unless_disconnected(request: Request, work: Awaitable[T],
                              gens: list[Generation]) -> T:
    """Await `work`, but cancel the sequences as soon as the client goes away."""
    async def wait_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # client gone, or this request was cancelled (wall-time limit)
            task.cancel()
            for gen in gens:
                gen.cancel()
    # Not done: the client went away first; the cancel above is still on its way (so the
    # task is not `cancelled()` yet, and asking for its result would be an error, a 500).
    if not task.done() or task.cancelled():
        raise APIError(499, "client disconnected", code="client_closed_request")
    return task.result()


def usage(prompt_tokens: int, completion_tokens: int, cached: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens,
                 prompt_tokens_details={"cached_tokens": cached})


def chat_logprob_entry(runtime: LlamaChatRuntime, lp: TokenLogprob) -> TokenLogprobEntry:
    def top(token: int, logprob: float) -> TopLogprob:
        return TopLogprob(token=runtime.token_text(token), logprob=logprob,
                          bytes=list(runtime.token_bytes(token)))

    head = top(lp.token, lp.logprob)
    return TokenLogprobEntry(token=head.token, logprob=head.logprob, bytes=head.bytes,
                             top_logprobs=[top(t, v) for t, v in lp.top])


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"


def sse_json(body: dict[str, Any]) -> str:
    return sse(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
