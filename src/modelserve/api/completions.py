"""POST /v1/completions (the legacy text completion API): prompts run through the chat
core's run layer (chat/run.py) without a template or parser, encoded as OpenAI's text
completions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelserve.api import leases, pipeline, sampling
from modelserve.api.caching import CachePlan
from modelserve.api.chat import output_format
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
from modelserve.api.streams import sse
from modelserve.chat import events as ev
from modelserve.chat.budget import check_token_ids, completion_budget, sampling_params
from modelserve.chat.cache_scope import cache_salt
from modelserve.chat.grammars import output_grammar
from modelserve.chat.route import Replay, Source
from modelserve.chat.run import TurnRun, submit_all
from modelserve.config_sections import InputLimits
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
        check_token_ids(runtime, tokens, param)
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
        self.grammar = output_grammar(output_format(req))

    async def acquire(self) -> ChatModel:
        return await leases.acquire_kind(self.request, self.req.model, CHAT)

    async def count(self, runtime: ChatModel) -> tuple[int, int]:
        req = self.req
        if req.suffix:
            raise bad_request("suffix is not supported by this model", param="suffix")
        if req.echo and req.logprobs is not None:
            raise bad_request("echo together with logprobs is not supported", param="echo")
        settings = sampling.sampling(req, req.max_tokens, req.logprobs)
        check_token_ids(runtime, [t for t, _ in settings.logit_bias], "logit_bias")
        self.prompts, texts = _prompts(req, runtime)
        self.jobs = []
        for prompt in self.prompts:
            max_tokens = completion_budget(runtime, len(prompt), req.max_tokens, "max_tokens")
            self.jobs += [(prompt, sampling_params(settings, max_tokens, i, self.grammar))
                          for i in range(req.n)]
        self.echoes = texts if req.echo else [""] * len(self.prompts)
        self.prompt_tokens = sum(len(p) for p in self.prompts)
        return self.prompt_tokens, sum(params.max_tokens for _, params in self.jobs)

    def deterministic(self) -> bool:
        return self.req.temperature == 0 or self.req.seed is not None

    def replay(self, entry: bytes, runtime: ChatModel) -> Response:
        result = ev.Result.from_json(json.loads(entry))
        if self.req.stream:
            return _streaming(self._stream(Replay(result), runtime))
        return Response(self._answer(result, runtime), media_type="application/json")

    async def respond(self, runtime: ChatModel, plan: CachePlan) -> Response:
        req = self.req
        salt = cache_salt(context(self.request).key_id, runtime.cache_scope == "per_key",
                          req.cache_salt)
        run = TurnRun(submit_all(runtime, self.jobs, salt=salt), self.prompt_tokens, req.model,
                      None, req.logprobs is not None)
        if req.stream:
            return _streaming(self._run_stream(run, runtime, plan))
        result = await run.collect(self.request)
        context(self.request).completion_tokens = run.completion_tokens
        await plan.store(json.dumps(result.to_json()).encode())
        return Response(self._answer(result, runtime), media_type="application/json")

    def _echo(self, index: int) -> str:
        return self.echoes[index // self.req.n]

    def _answer(self, result: ev.Result, runtime: ChatModel) -> bytes:
        choices = []
        for c in result.choices:
            echo = self._echo(c.index)
            logprobs = _logprobs(runtime, c.logprobs or [], len(echo)) \
                if self.req.logprobs is not None else None
            choices.append(CompletionChoice(index=c.index, text=echo + (c.content or ""),
                                            logprobs=logprobs, finish_reason=c.finish_reason))
        return CompletionResponse(id=f"cmpl-{result.id}", created=result.created,
                                  model=result.model, choices=choices,
                                  usage=sampling.usage(result.usage)).model_dump_json().encode()

    async def _run_stream(self, run: TurnRun, runtime: ChatModel, plan: CachePlan
                          ) -> AsyncIterator[str]:
        try:
            async for chunk in self._stream(run, runtime):
                yield chunk
        finally:
            plan.ctx.completion_tokens = run.completion_tokens
        if run.result is not None:
            await plan.store(json.dumps(run.result.to_json()).encode())

    async def _stream(self, source: Source, runtime: ChatModel) -> AsyncIterator[str]:
        req = self.req
        head = ChunkHead(f"cmpl-{source.id}", source.created, source.model,
                         req.usage_requested)
        choices = len(self.echoes) * req.n
        for i in range(choices):
            if self._echo(i):
                yield completion_chunk(head, [CompletionChoice(index=i, text=self._echo(i),
                                                               finish_reason=None)])
        offsets = [len(self._echo(i)) for i in range(choices)]
        try:
            async for event in source.events():
                if isinstance(event, ev.TextDelta):
                    logprobs = _logprobs(runtime, event.logprobs or [], offsets[event.index]) \
                        if req.logprobs is not None else None
                    offsets[event.index] += len(event.text)
                    yield completion_chunk(head, [CompletionChoice(
                        index=event.index, text=event.text, logprobs=logprobs,
                        finish_reason=None)])
                elif isinstance(event, ev.Finish):
                    yield completion_chunk(head, [CompletionChoice(
                        index=event.index, text="", finish_reason=event.reason)])
        except APIError as exc:
            yield exc.sse()
        if req.usage_requested:
            yield completion_chunk(head, [], sampling.usage(source.usage))
        yield sse("[DONE]")


def _streaming(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
