"""OpenAI's shapes for what chat and completions share: request sampling fields as the
core's `Sampling`, usage, and token logprobs."""

from __future__ import annotations

from collections.abc import Iterable

from modelserve.api.protocol import SamplingFields, TokenLogprobEntry, TopLogprob, Usage
from modelserve.chat import events
from modelserve.chat.turn import Sampling
from modelserve.engine.sequence import TokenLogprob
from modelserve.kinds.chat import ChatModel


def sampling(req: SamplingFields, max_tokens: int | None, logprobs: int | None,
             prediction: str | None = None) -> Sampling:
    return Sampling(
        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
        min_p=req.min_p, seed=req.seed, stop=tuple(req.stop or ()),
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        logit_bias=tuple((int(k), float(v)) for k, v in (req.logit_bias or {}).items()),
        logprobs=logprobs, n=req.n, ignore_eos=req.ignore_eos, min_tokens=req.min_tokens,
        prediction=prediction, cache_salt=req.cache_salt)


def usage(counts: events.Usage, reasoning_tokens: int | None = None) -> Usage:
    """With `reasoning_tokens` (chat), `completion_tokens_details` too, as OpenAI's."""
    details = None if reasoning_tokens is None else {
        "reasoning_tokens": reasoning_tokens,
        "accepted_prediction_tokens": counts.accepted_prediction_tokens,
        "rejected_prediction_tokens": counts.rejected_prediction_tokens}
    return Usage(prompt_tokens=counts.prompt_tokens, completion_tokens=counts.completion_tokens,
                 total_tokens=counts.total_tokens,
                 prompt_tokens_details={"cached_tokens": counts.cached_tokens},
                 completion_tokens_details=details)


def reasoning_tokens(model: ChatModel, reasonings: Iterable[str | None],
                     completion_tokens: int) -> int:
    """The reasoning's share of the answers' tokens. The core counts each answer's tokens as
    one; the share is each choice's reasoning text tokenized again (the same tokens, up to
    how a boundary merges)."""
    counted = sum(len(model.tokenize(text, add_special=False)) for text in reasonings if text)
    return min(counted, completion_tokens)


def chat_logprob_entry(runtime: ChatModel, lp: TokenLogprob) -> TokenLogprobEntry:
    def top(token: int, logprob: float) -> TopLogprob:
        return TopLogprob(token=runtime.token_text(token), logprob=logprob,
                          bytes=list(runtime.token_bytes(token)))

    head = top(lp.token, lp.logprob)
    return TokenLogprobEntry(token=head.token, logprob=head.logprob, bytes=head.bytes,
                             top_logprobs=[top(t, v) for t, v in lp.top])
