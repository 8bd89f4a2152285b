"""The draft model's bookkeeping (engine/draft_model.py) against a fake llama.cpp context that
predicts "previous token + 1": what its KV holds per slot, what it decodes again, where it
stops; and the tokenizer check against fake vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from modelserve.engine.draft_model import DraftModel, DraftModelMismatch, check_same_tokenizer
from modelserve.engine.speculation import start_drafting

VOCAB = 50
EOG = 49


@dataclass
class FakeModel:
    n_vocab: int = VOCAB
    bos_token_id: int = 1
    eos_token_id: int = EOG
    path: Path = Path("fake.gguf")
    pieces: dict[int, bytes] = field(default_factory=dict)

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        return self.pieces.get(token, b"t%d" % token)

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return [b % VOCAB for b in text.encode()]


@dataclass
class FakeContext:
    """KV per slot as (position, token) lists; logits say "the last token + 1"."""

    ctx_per_seq: int = 64
    batch_size: int = 8
    kv: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    decoded: list[int] = field(default_factory=list)  # rows per decode call
    _rows: list[int] = field(default_factory=list)

    def decode(self, tokens: list[int], positions: list[int], seq_ids: list[int],
               want_logits: list[bool]) -> None:
        kv = self.kv.setdefault(seq_ids[0], [])
        for token, pos in zip(tokens, positions, strict=True):
            assert pos == len(kv), "positions follow the slot's KV"
            kv.append((pos, token))
        self._rows = list(tokens)
        self.decoded.append(len(tokens))

    def logits(self, row: int) -> Any:
        out = np.zeros(VOCAB, dtype=np.float32)
        out[min(self._rows[row] + 1, EOG)] = 1.0
        return out

    def forget(self, seq_id: int, from_pos: int = 0) -> None:
        self.kv[seq_id] = self.kv.get(seq_id, [])[:from_pos]


def drafter(**ctx: Any) -> tuple[DraftModel, FakeContext]:
    fake = FakeContext(**ctx)
    return DraftModel(FakeModel(), fake), fake  # type: ignore[arg-type]


def test_drafts_catch_up_once_then_follow_the_output() -> None:
    model, ctx = drafter()
    assert model.draft(0, [3, 4, 5], 4) == [6, 7, 8, 9]
    assert ctx.decoded == [3, 1, 1, 1]  # the prompt in one decode, then a guess at a time
    # Two guesses accepted, then the served model's own token (20): the rejected guesses go,
    # the new tokens are decoded in one row batch.
    ctx.decoded.clear()
    assert model.draft(0, [3, 4, 5, 6, 7, 20], 2) == [21, 22]
    assert ctx.decoded == [1, 1]
    assert [t for _, t in ctx.kv[0]] == [3, 4, 5, 6, 7, 20, 21]


def test_the_last_token_is_decoded_again_for_its_logits() -> None:
    model, ctx = drafter()
    model.draft(0, [3, 4], 1)
    ctx.decoded.clear()
    assert model.draft(0, [3, 4], 1) == [5]
    assert ctx.decoded == [1] and [t for _, t in ctx.kv[0]] == [3, 4]


def test_long_prompts_catch_up_in_batches_and_slots_are_apart() -> None:
    model, ctx = drafter(batch_size=4)
    assert model.draft(1, list(range(10)), 1) == [10]
    assert ctx.decoded == [4, 4, 2]
    assert model.draft(2, [7], 2) == [8, 9]
    assert len(ctx.kv[1]) == 10 and [t for _, t in ctx.kv[2]] == [7, 8]
    # another conversation in slot 1: only the common prefix stays
    assert model.draft(1, [0, 1, 40], 1) == [41]
    assert [t for _, t in ctx.kv[1]] == [0, 1, 40]


def test_drafts_stop_at_an_end_of_generation_and_at_the_slot_end() -> None:
    model, _ = drafter(ctx_per_seq=8)
    assert model.draft(0, [46], 8) == [47, 48, EOG]
    assert model.draft(1, [1, 2, 3, 4, 5, 6], 8) == [7]  # one cell left for the guess
    assert model.draft(2, [1, 2, 3, 4, 5, 6, 7], 8) == []
    assert model.draft(3, [], 4) == []


def test_forget_starts_a_slot_over() -> None:
    model, ctx = drafter()
    model.draft(0, [3, 4, 5], 2)
    model.forget(0)
    ctx.decoded.clear()
    assert model.draft(0, [3, 4, 5], 1) == [6]
    assert ctx.decoded == [3]


def test_tokenizer_check() -> None:
    target = FakeModel()
    check_same_tokenizer(FakeModel(n_vocab=VOCAB + 100), target)  # padding differs: fine
    for draft, why in [
        (FakeModel(n_vocab=VOCAB + 500), "tokens against"),
        (FakeModel(bos_token_id=2), "BOS/EOS"),
        (FakeModel(pieces={0: b"other"}), "token 0 differs"),
    ]:
        with pytest.raises(DraftModelMismatch, match=why):
            check_same_tokenizer(draft, target)  # type: ignore[arg-type]


def test_sequences_with_images_draft_without_the_model() -> None:
    def model(tokens: list[int], want: int) -> list[int]:
        return [7] * want

    assert start_drafting([1, 2], (), ngram=False, model=model).draft([], 4, 16) == [7] * 4
    with_image = start_drafting([1, -1, -1, 2], (), ngram=False, model=model)
    assert with_image.model is None and with_image.draft([], 4, 16) == []


class CostedDrafter:
    """A drafter whose guess costs `cost` of a step."""

    def __init__(self, cost: float) -> None:
        self.cost = cost

    def draft(self, slot: int, tokens: list[int], want: int) -> list[int]:
        return []

    def forget(self, slot: int) -> None:
        pass

    def relative_cost(self) -> float:
        return self.cost


@pytest.mark.parametrize(("row_cost", "guess_cost", "used", "min_accept"), [
    (0.04, 0.1, True, 0.175),  # a GPU, a small draft: drafts pay above 17.5 % accepted
    (0.02, 0.0, True, 0.1),  # never below 10 %
    (0.69, 0.3, False, None),  # SmolLM2 on 2 cores with a cut-down draft: never pays
    (0.34, 0.36, False, None),  # the same, measured once with rows cheaper
])
def test_a_draft_model_is_used_only_where_its_guesses_can_pay(
        row_cost: float, guess_cost: float, used: bool, min_accept: float | None) -> None:
    from modelserve.engine.llm_engine import EngineConfig, LLMEngine

    runner = SimpleNamespace(n_slots=1, batch_size=16)  # all the engine reads before it runs
    engine = LLMEngine(runner, None, EngineConfig(draft_max=16),  # type: ignore[arg-type]
                       drafter=CostedDrafter(guess_cost))
    engine._plan_draft_model(row_cost)
    assert (engine.drafter is not None) is used
    if min_accept is not None:
        assert engine.model_min_accept == pytest.approx(min_accept)


def test_draft_model_options() -> None:
    from pydantic import ValidationError

    from modelserve.kinds.options import LlamaCppOptions

    with pytest.raises(ValidationError, match=r"needs options\.draft_model"):
        LlamaCppOptions(speculation="draft_model")
    # `prediction` and `off` never draft from a model
    for mode in ("prediction", "off"):
        options = LlamaCppOptions(draft_model="/models/draft.gguf", speculation=mode)
        assert options.resolve_draft_model() is None
