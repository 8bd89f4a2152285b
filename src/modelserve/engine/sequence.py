"""Plain data for one generation request as it moves through the engine."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from modelserve.engine.speculation import DraftState

_ids = itertools.count()


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: str | None = None  # llguidance grammar the output must follow (engine/constraints)
    ignore_eos: bool = False  # end-of-generation tokens are never sampled (benchmark clients)
    min_tokens: int = 0  # nor before this many output tokens
    # OpenAI's Predicted Outputs: the tokens the client expects back, drafted for speculation.
    prediction: tuple[int, ...] = ()
    # The scope of the KV this request may reuse and leaves behind (slots and prompt store):
    # only requests with the same salt share it. "" is the shared scope (api/cache_scope.py).
    cache_salt: str = ""

    @property
    def plain_greedy(self) -> bool:
        """The argmax of the logits, nothing else: no sampler chain is needed, and drafted
        tokens can be verified row by row."""
        return (self.temperature <= 0 and not self.logit_bias and not self.presence_penalty
                and not self.frequency_penalty and self.repeat_penalty == 1.0)


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class StepOutput:
    """What one engine step produced for one sequence, handed to the asyncio side."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error"
    stop_sequence: str | None = None  # with "stop": the stop string that ended it, if one did
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    # With a prediction, so far: its tokens the output took, and the drafted ones it did not.
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    error: str | None = None
    queue_seconds: float | None = None  # on the first token: submit to slot, in the engine
    # With "error": what it stands for (failures.UNAVAILABLE: the model's worker died or its
    # engine failed, 503; failures.BUSY: its queue was full, 429); None: a 500.
    error_code: str | None = None


class TimingSink(Protocol):
    """Where a generation reports its latencies (the metrics layer implements it)."""

    def queue_wait(self, seconds: float) -> None: ...

    def first_token(self, seconds: float) -> None: ...

    def inter_token(self, seconds: float) -> None: ...


@dataclass(eq=False)
class ImageSpan:
    """One image chunk of a prompt: its embeddings fill prompt[start : start + n_tokens].

    In the prompt's token list the span holds a pseudo-token id (negative, so outside every
    vocabulary) derived from the image's hash: prefix matching then reuses an image's KV only
    for the very same image, and stops where two prompts' images differ.

    The embeddings (megabytes for a big projector) never cross a worker's pipe: pickling
    drops them, and the worker takes them back from its projector's cache by `image_id`, so
    the `n` choices of a request, or a later turn showing the same image, send none of them.
    """

    start: int
    n_tokens: int
    pos: npt.NDArray[np.int32]  # (n_pos_per_embd, n_tokens): 1 row, or 4 for M-RoPE models
    n_pos: int  # positions the span advances (differs from n_tokens for M-RoPE)
    image_id: str = ""  # the image's content hash (mtmd's bitmap id)
    non_causal: bool = False  # attend both ways inside the image: evaluate it in one decode
    embd: npt.NDArray[np.float32] | None = None  # (n_tokens, n_embd), from the projector

    def __getstate__(self) -> dict[str, object]:
        return {**vars(self), "embd": None}

    @property
    def end(self) -> int:
        return self.start + self.n_tokens


@dataclass
class MultimodalPrompt:
    """A rendered prompt: text tokens, and each image's pseudo-token id over its span."""

    tokens: list[int]
    images: list[ImageSpan] = field(default_factory=list)

    @property
    def image_tokens(self) -> int:
        return sum(span.n_tokens for span in self.images)


class SequenceStatus(Enum):
    WAITING = "waiting"
    PREFILLING = "prefilling"
    DECODING = "decoding"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    params: SamplingParams
    sink: Callable[[StepOutput], None]
    id: int = field(default_factory=lambda: next(_ids))
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int = -1
    n_computed: int = 0  # tokens of prompt+output already in the slot's KV cache
    cached_tokens: int = 0  # prompt tokens reused from an earlier request
    output: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    submitted_at: float = field(default_factory=time.perf_counter)
    admitted_at: float | None = None  # perf_counter() when it got a slot
    images: list[ImageSpan] = field(default_factory=list)  # in prompt order
    drafting: DraftState | None = None  # set when it speculates (engine/speculation.py)

    def position(self, index: int) -> int:
        """The KV position of prompt/output index `index` (they differ after M-RoPE images)."""
        if not self.images:
            return index
        return index - sum(s.n_tokens - s.n_pos for s in self.images if s.end <= index)

    def image_at(self, index: int) -> ImageSpan | None:
        return next((s for s in self.images if s.start <= index < s.end), None)

    def text_until(self, index: int) -> int:
        """Where the run of text tokens from `index` ends (the next image, or the prompt end)."""
        return next((s.start for s in self.images if s.start >= index), len(self.prompt))

    def reusable(self, n: int) -> int:
        """`n` cached prompt tokens, cut back to whole images (a part of one is recomputed)."""
        span = self.image_at(n)
        return span.start if span is not None else n
