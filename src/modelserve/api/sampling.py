"""OpenAI's shapes for what chat and completions share: request sampling fields as the
core's `Sampling`, usage, and token logprobs."""

from __future__ import annotations

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
        prediction=prediction)


def usage(counts: events.Usage) -> Usage:
    return Usage(prompt_tokens=counts.prompt_tokens, completion_tokens=counts.completion_tokens,
                 total_tokens=counts.total_tokens,
                 prompt_tokens_details={"cached_tokens": counts.cached_tokens})


def chat_logprob_entry(runtime: ChatModel, lp: TokenLogprob) -> TokenLogprobEntry:
    def top(token: int, logprob: float) -> TopLogprob:
        return TopLogprob(token=runtime.token_text(token), logprob=logprob,
                          bytes=list(runtime.token_bytes(token)))

    head = top(lp.token, lp.logprob)
    return TokenLogprobEntry(token=head.token, logprob=head.logprob, bytes=head.bytes,
                             top_logprobs=[top(t, v) for t, v in lp.top])
