"""Generation request fields -> what the engine takes (token checks, the completion budget,
sampling params), and its results -> wire types (usage, logprob entries)."""

from __future__ import annotations

from modelserve.api.errors import APIError, bad_request
from modelserve.api.protocol import SamplingFields, TokenLogprobEntry, TopLogprob, Usage
from modelserve.engine.sequence import SamplingParams, TokenLogprob
from modelserve.kinds.chat import ChatModel
from modelserve.kinds.embeddings import EmbeddingsModel


def check_token_ids(runtime: ChatModel | EmbeddingsModel, tokens: list[int],
                    param: str) -> None:
    bad = next((t for t in tokens if not 0 <= t < runtime.n_vocab), None)
    if bad is not None:
        raise bad_request(f"token id {bad} is out of range [0, {runtime.n_vocab})", param=param)


def completion_budget(runtime: ChatModel, prompt_len: int, requested: int | None,
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


def sampling_params(req: SamplingFields, runtime: ChatModel, max_tokens: int,
                    choice: int, top_logprobs: int | None, grammar: str | None = None
                    ) -> SamplingParams:
    bias = tuple((int(k), float(v)) for k, v in (req.logit_bias or {}).items())
    check_token_ids(runtime, [t for t, _ in bias], "logit_bias")
    return SamplingParams(
        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
        min_p=req.min_p, seed=None if req.seed is None else req.seed + choice,
        stop=tuple(req.stop or ()), presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, repeat_penalty=req.repeat_penalty,
        logit_bias=bias, logprobs=top_logprobs is not None, top_logprobs=top_logprobs or 0,
        grammar=grammar)


def usage(prompt_tokens: int, completion_tokens: int, cached: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens,
                 prompt_tokens_details={"cached_tokens": cached})


def chat_logprob_entry(runtime: ChatModel, lp: TokenLogprob) -> TokenLogprobEntry:
    def top(token: int, logprob: float) -> TopLogprob:
        return TopLogprob(token=runtime.token_text(token), logprob=logprob,
                          bytes=list(runtime.token_bytes(token)))

    head = top(lp.token, lp.logprob)
    return TokenLogprobEntry(token=head.token, logprob=head.logprob, bytes=head.bytes,
                             top_logprobs=[top(t, v) for t, v in lp.top])
