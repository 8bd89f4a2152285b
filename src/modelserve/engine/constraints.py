"""Grammar-constrained sampling, per sequence (llguidance).

Each constrained sequence has a matcher that follows its output. Before a token is sampled,
the matcher's mask (one bit per vocabulary token, ~30 us for a JSON schema over SmolLM2's 49k
tokens) sets every token the grammar forbids to -inf in that row's logits, in llama.cpp's own
buffer, so whatever samples next (the greedy argmax or the sequence's llama.cpp chain) can only
pick an allowed token. The sampled token then advances the matcher.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class GrammarError(RuntimeError):
    """The output left the grammar (only if sampling ignored the mask)."""


class Constraints:
    """The matchers of one model's constrained sequences, keyed by sequence id."""

    def __init__(self, vocab: Any, n_vocab: int) -> None:
        self._vocab = vocab  # the llama.cpp vocabulary handle
        self._n_vocab = n_vocab
        self._tokenizer: Any = None  # built on first use: ~0.2 s for a 49k vocabulary
        self._matchers: dict[int, Any] = {}

    def _lltokenizer(self) -> Any:
        if self._tokenizer is None:
            from llguidance.llamacpp import lltokenizer_from_vocab

            self._tokenizer = lltokenizer_from_vocab(self._vocab)
        return self._tokenizer

    def mask(self, seq_id: int, grammar: str, logits: npt.NDArray[np.float32]) -> None:
        """Forbid, in place, every token the grammar does not allow next."""
        matcher = self._matchers.get(seq_id)
        if matcher is None:
            from llguidance import LLMatcher

            matcher = self._matchers[seq_id] = LLMatcher(self._lltokenizer(), grammar,
                                                         log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little", count=self._n_vocab).astype(bool)
        logits[~allowed] = -np.inf

    def advance(self, seq_id: int, token: int) -> bool:
        """Feed the sampled token; True once the grammar is complete (nothing may follow)."""
        matcher = self._matchers[seq_id]
        if not matcher.consume_token(token):
            raise GrammarError(matcher.get_error() or f"token {token} is not allowed here")
        return bool(matcher.is_stopped())

    def release(self, seq_id: int) -> None:
        self._matchers.pop(seq_id, None)
