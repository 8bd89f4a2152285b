"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import cast

from fastapi import APIRouter, Request, Response

from modelserve.api import leases, pipeline, sampling, streams
from modelserve.api.caching import CachePlan, cached_answer, replay_completion
from modelserve.api.chunks import ChunkHead, completion_chunk
from modelserve.api.errors import APIError, bad_request
from modelserve.api.input_limits import check_sampling, check_texts
from modelserve.api.observe import context
from modelserve.api.openapi import error_responses, streamed_or
from modelserve.api.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
)
from modelserve.api.structured import output_grammar
from modelserve.config_sections import InputLimits
from modelserve.engine.generation import Generation
from modelserve.engine.sequence import SamplingParams, TokenLogprob
from modelserve.kinds.chat import CHAT, ChatModel

router = APIRouter()


def _prompts(req: CompletionRequest, runtime: ChatModel
             ) -> tuple[list[list[int]], list[str]]:
    """The prompts as token lists, and as text (for `echo`)."""
    prompt = req.prompt
    token_prompts: list[list[int]] = []
    texts: list[str] = []
    if isinstance(prompt, str):
        texts = [prompt]
    elif all(isinstance(p, int) for p in prompt):
        token_prompts = [cast(list[int], prompt)]
    elif all(isinstance(p, list) for p in prompt):
        token_prompts = [list(p) for p in cast(list[list[int]], prompt)]
    else:
        texts = [str(p) for p in prompt]
    if texts:
        if any(not t for t in texts):
            raise bad_request("prompt must not be empty", param="prompt")
        return [runtime.tokenize(t) for t in texts], texts
    for i, tokens in enumerate(token_prompts):
        param = f"prompt[{i}]" if len(token_prompts) > 1 else "prompt"
        sampling.check_token_ids(runtime, tokens, param)
    return token_prompts, [runtime.detokenize(tokens) for tokens in token_prompts]


def _logprobs(runtime: ChatModel, lps: list[TokenLogprob], offset: int
              ) -> CompletionLogprobs:
    out = CompletionLogprobs()
    for lp in lps:
        text = runtime.token_text(lp.token)
        out.tokens.append(text)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({runtime.token_text(t): v for t, v in lp.top})
        out.text_offset.append(offset)
        offset += len(text)
    return out


@router.post("/v1/completions", response_model=None,
             responses={200: streamed_or(CompletionResponse), **error_responses(404, 429, 503)})
async def create_completion(req: CompletionRequest, request: Request) -> Response:
    return await pipeline.serve(CompletionsRoute(req, request))


class CompletionsRoute(pipeline.Route[CompletionRequest, ChatModel]):
    cache_route = "completions"
    prompts: list[list[int]]
    echoes: list[str]
    jobs: list[tuple[list[int], SamplingParams]]
    prompt_tokens: int

    def check_limits(self, limits: InputLimits) -> None:
        req = self.req
        check_sampling(req, limits, req.max_tokens)
        texts_in = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        check_texts([t for t in texts_in if isinstance(t, str)], limits, "prompt")
        self.grammar = output_grammar(req)

    async def acquire(self) -> ChatModel:
        return await leases.acquire_kind(self.request, self.req.model, CHAT)

    async def count(self, runtime: ChatModel) -> tuple[int, int]:
        req = self.req
        if req.suffix:
            raise bad_request("suffix is not supported by this model", param="suffix")
        if req.echo and req.logprobs is not None:
            raise bad_request("echo together with logprobs is not supported", param="echo")
        self.prompts, texts = _prompts(req, runtime)
        self.jobs = []
        for prompt in self.prompts:
            max_tokens = sampling.completion_budget(runtime, len(prompt), req.max_tokens,
                                                    "max_tokens")
            self.jobs += [(prompt, sampling.sampling_params(req, runtime, max_tokens, i,
                                                            req.logprobs, self.grammar))
                          for i in range(req.n)]
        self.echoes = texts if req.echo else [""] * len(self.prompts)
        self.prompt_tokens = sum(len(p) for p in self.prompts)
        return self.prompt_tokens, sum(params.max_tokens for _, params in self.jobs)

    def deterministic(self) -> bool:
        return self.req.temperature == 0 or self.req.seed is not None

    def replay(self, entry: bytes) -> Response:
        return cached_answer(entry, self.req.stream,
                             lambda body: replay_completion(body, self.req.usage_requested))

    async def respond(self, runtime: ChatModel, plan: CachePlan) -> Response:
        req, request, echoes, prompt_tokens = self.req, self.request, self.echoes, \
            self.prompt_tokens
        gens = streams.submit_all(runtime, self.jobs)
        if req.stream:
            return streams.event_stream(_stream(req, runtime, gens, echoes, prompt_tokens,
                                                self.req.usage_requested, plan))
        results = await streams.unless_disconnected(
            request, asyncio.gather(*(streams.collect(gen) for gen in gens)), gens)
        choices = []
        for i, r in enumerate(results):
            echo = echoes[i // req.n]
            logprobs = _logprobs(runtime, r.logprobs, len(echo)) \
                if req.logprobs is not None else None
            choices.append(CompletionChoice(index=i, text=echo + r.text, logprobs=logprobs,
                                            finish_reason=r.finish_reason))
        completion = sum(len(r.tokens) for r in results)
        context(request).completion_tokens = completion
        cached = min(r.cached_tokens for r in results)
        body = CompletionResponse(model=req.model, choices=choices,
                                  usage=sampling.usage(prompt_tokens, completion, cached)
                                  ).model_dump_json().encode()
        await plan.store(body)
        return Response(body, media_type="application/json")


async def _stream(req: CompletionRequest, runtime: ChatModel, gens: list[Generation],
                  echoes: list[str], prompt_tokens: int, include_usage: bool, plan: CachePlan
                  ) -> AsyncIterator[str]:
    chunk_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    head = ChunkHead(chunk_id, created, req.model, include_usage)

    def chunk(choices: list[CompletionChoice]) -> str:
        return completion_chunk(head, choices)

    for i, echo in enumerate(echoes):
        for j in range(req.n):
            if echo:
                yield chunk([CompletionChoice(index=i * req.n + j, text=echo,
                                              finish_reason=None)])
    completion, offsets = 0, {i: len(echoes[i // req.n]) for i in range(len(gens))}
    texts = [echoes[i // req.n] for i in range(len(gens))]
    finishes = [""] * len(gens)
    # The prefix-cache hit of the choice that reused least, as the non-streamed answer reports.
    cached: int | None = None
    try:
        async for index, out in streams.merge(gens):
            streams.raise_if_failed(out)
            completion += len(out.token_ids)
            texts[index] += out.text
            if out.finish_reason is not None:
                finishes[index] = out.finish_reason
                cached = out.cached_tokens if cached is None else min(cached, out.cached_tokens)
            if out.text or out.finish_reason is not None or out.logprobs:
                logprobs = _logprobs(runtime, out.logprobs, offsets[index]) \
                    if req.logprobs is not None else None
                offsets[index] += len(out.text)
                yield chunk([CompletionChoice(index=index, text=out.text, logprobs=logprobs,
                                              finish_reason=out.finish_reason)])
    except APIError as exc:
        yield exc.sse()
    finally:
        plan.ctx.completion_tokens = completion
    usage = sampling.usage(prompt_tokens, completion, cached or 0)
    if include_usage:
        yield completion_chunk(head, [], usage)
    yield streams.sse("[DONE]")
    if req.logprobs is None and all(f in ("stop", "length") for f in finishes):
        await plan.store(CompletionResponse(
            id=chunk_id, created=created, model=req.model, usage=usage,
            choices=[CompletionChoice(index=i, text=text, finish_reason=finishes[i])
                     for i, text in enumerate(texts)],
        ).model_dump_json().encode())
