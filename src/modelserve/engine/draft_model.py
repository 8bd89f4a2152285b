"""A draft model for speculative decoding: a small GGUF that shares the served model's
tokenizer guesses each greedy sequence's next tokens by its own greedy decoding, and the
served model verifies them in its batched step as it does prompt-lookup drafts
(engine/speculation.py). The output is the served model's, only sooner where the draft agrees.

The draft model has its own llama.cpp context with one KV sequence per slot of the served
model. Each slot remembers the tokens its draft KV holds; a draft first drops what no longer
matches (rejected guesses, another conversation in the slot), catches up on the rest
(prompt, accepted tokens) in one decode, then decodes its guesses one token at a time."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from modelserve.engine.scheduler import common_prefix_len
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel

logger = logging.getLogger(__name__)

# llama.cpp's own rule for a draft model's vocabulary (common/speculative.cpp): sizes may
# differ by padding, the tokens they share must be the same.
MAX_VOCAB_DIFFERENCE = 128
PROBE_TEXT = "def main():\n    print('Hello, world! 1234') # ünïcode ✓"


class DraftModelMismatch(ValueError):
    """The draft model does not share the served model's tokenizer."""


def check_same_tokenizer(draft: LlamaModel, target: LlamaModel) -> None:
    """Raise DraftModelMismatch unless `draft` tokenizes as `target` does."""
    def refuse(why: str) -> DraftModelMismatch:
        return DraftModelMismatch(f"draft model {draft.path.name} does not share the "
                                  f"tokenizer of {target.path.name}: {why}")

    if abs(draft.n_vocab - target.n_vocab) > MAX_VOCAB_DIFFERENCE:
        raise refuse(f"{draft.n_vocab} tokens against {target.n_vocab}")
    if (draft.bos_token_id, draft.eos_token_id) != (target.bos_token_id, target.eos_token_id):
        raise refuse("different BOS/EOS tokens")
    shared = min(draft.n_vocab, target.n_vocab)
    step = max(1, shared // 512)
    for token in range(0, shared, step):
        if draft.token_bytes(token, special=True) != target.token_bytes(token, special=True):
            raise refuse(f"token {token} differs")
    if draft.tokenize(PROBE_TEXT, False) != target.tokenize(PROBE_TEXT, False):
        raise refuse("a probe text tokenizes differently")


class DraftModel:
    """Greedy drafts from a small model, one KV sequence per slot of the served model."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext,
                 target: LlamaContext | None = None) -> None:
        self.model = model
        self.ctx = ctx
        self.target = target  # the served model's context, for relative_cost
        self._cached: dict[int, list[int]] = {}  # slot -> tokens in its draft KV

    def relative_cost(self) -> float:
        """One draft decode (a guess) relative to one served-model step, measured on this
        machine (call on the engine thread, at load, while every slot is empty)."""
        assert self.target is not None
        return self.ctx.time_decode(1) / self.target.time_decode(1)

    @classmethod
    def load(cls, path: Path, target: LlamaContext, threads: int | None,
             gpu_layers: int = 0) -> DraftModel:
        """The draft model at `path` for `target`'s model, with as many slots of the same
        size."""
        model = LlamaModel(path, gpu_layers=gpu_layers)
        try:
            check_same_tokenizer(model, target.model)
            ctx = LlamaContext(model, n_seq=target.n_seq, ctx_per_seq=target.ctx_per_seq,
                               batch_size=target.batch_size, threads=threads)
        except Exception:
            model.close()
            raise
        logger.info("draft model %s (%d MB) for %s", path.name, model.size_bytes >> 20,
                    target.model.path.name)
        return cls(model, ctx, target)

    def draft(self, slot: int, tokens: list[int], want: int) -> list[int]:
        """Up to `want` tokens the draft model expects after `tokens` (slot `slot`'s prompt
        and output), fewer where it predicts an end of generation or the slot is full."""
        want = min(want, self.ctx.ctx_per_seq - len(tokens) - 1)
        if want <= 0 or not tokens:
            return []
        cached = self._cached.setdefault(slot, [])
        # the last token is decoded again for its logits
        keep = min(common_prefix_len(cached, tokens), len(tokens) - 1)
        if keep < len(cached):
            self.ctx.forget(slot, keep)
            del cached[keep:]
        pending = tokens[keep:]
        size = self.ctx.batch_size
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            last = start + size >= len(pending)
            self.ctx.decode(chunk, list(range(len(cached), len(cached) + len(chunk))),
                            [slot] * len(chunk), [False] * (len(chunk) - 1) + [last])
            cached += chunk
        row = len(pending) - 1 - (len(pending) - 1) // size * size
        guesses: list[int] = []
        while True:
            token = int(np.argmax(self.ctx.logits(row)))
            guesses.append(token)
            if len(guesses) >= want or self.model.is_eog(token):
                return guesses
            self.ctx.decode([token], [len(cached)], [slot], [True])
            cached.append(token)
            row = 0

    def forget(self, slot: int) -> None:
        """The slot's draft KV is unknown (its step failed): start it over next time."""
        self._cached.pop(slot, None)
        self.ctx.forget(slot)

    def set_threads(self, threads: int) -> None:
        self.ctx.set_threads(threads)

    def close(self) -> None:
        self.ctx.close()
        self.model.close()
