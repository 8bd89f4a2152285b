"""Token checks and budgets, and a turn's sampling as the engine takes it."""

from __future__ import annotations

from typing import Protocol

from modelserve.api.errors import APIError, bad_request
from modelserve.chat.turn import Sampling
from modelserve.engine.sequence import SamplingParams


class Vocabulary(Protocol):
    @property
    def n_vocab(self) -> int: ...


class Context(Protocol):
    context_size: int


def check_token_ids(model: Vocabulary, tokens: list[int], param: str) -> None:
    bad = next((t for t in tokens if not 0 <= t < model.n_vocab), None)
    if bad is not None:
        raise bad_request(f"token id {bad} is out of range [0, {model.n_vocab})", param=param)


def completion_budget(model: Context, prompt_len: int, requested: int | None,
                      param: str) -> int:
    """Max new tokens for a prompt; an over-long prompt or request is a 400 with the counts."""
    limit = model.context_size
    if prompt_len >= limit or (requested is not None and prompt_len + requested > limit):
        asked = prompt_len + (requested or 0)
        raise APIError(
            400,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{asked} tokens ({prompt_len} in the prompt, {requested or 0} for the completion). "
            "Please reduce the length of the prompt or the completion.",
            param=param, code="context_length_exceeded")
    return requested if requested is not None else limit - prompt_len


def sampling_params(sampling: Sampling, max_tokens: int, choice: int,
                    grammar: str | None = None, prediction: tuple[int, ...] = ()
                    ) -> SamplingParams:
    """The engine's parameters for choice `choice` (its seed is the turn's + the choice, so
    seeded choices differ from each other and repeat across requests). `prediction`: the
    turn's predicted output, tokenized."""
    return SamplingParams(
        max_tokens=max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
        top_k=sampling.top_k, min_p=sampling.min_p,
        seed=None if sampling.seed is None else sampling.seed + choice,
        stop=sampling.stop, presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty, repeat_penalty=sampling.repeat_penalty,
        logit_bias=sampling.logit_bias, logprobs=sampling.logprobs is not None,
        top_logprobs=sampling.logprobs or 0, grammar=grammar, ignore_eos=sampling.ignore_eos,
        # The request's check held min_tokens to max_tokens; the budget may be less (no
        # max_tokens: the context's room), and the length limit is the harder one.
        min_tokens=min(sampling.min_tokens, max_tokens), prediction=prediction)
