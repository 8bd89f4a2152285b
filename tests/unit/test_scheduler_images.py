"""Image spans in the scheduler: own slices after the token batch, budget, prefix reuse."""

from __future__ import annotations

import numpy as np

from modelserve.engine.scheduler import Scheduler
from modelserve.engine.sequence import ImageSpan, SamplingParams, Sequence
from modelserve.runtimes.mtmd import pseudo_token
from tests.conftest import step


def span(start: int, n: int, n_pos: int | None = None, non_causal: bool = False) -> ImageSpan:
    pos = np.arange(start, start + n, dtype=np.int32).reshape(1, n)
    return ImageSpan(start=start, n_tokens=n, embd=np.zeros((n, 4), dtype=np.float32), pos=pos,
                     n_pos=n if n_pos is None else n_pos, non_causal=non_causal)


def image_seq(before: list[int], image: str, n: int, after: list[int],
              **kw: bool) -> Sequence:
    prompt = [*before, *[pseudo_token(image, 0)] * n, *after]
    return Sequence(prompt=prompt, params=SamplingParams(max_tokens=4), sink=lambda out: None,
                    images=[span(len(before), n, **kw)])


def test_pseudo_tokens_are_negative_and_differ_per_image_and_chunk() -> None:
    a, b = pseudo_token("a" * 64, 0), pseudo_token("b" * 64, 0)
    assert a < 0 and b < 0 and a != b
    assert pseudo_token("a" * 64, 0) == a != pseudo_token("a" * 64, 1)


def test_text_runs_to_the_image_then_the_image_then_the_rest() -> None:
    sched = Scheduler(n_slots=2, token_budget=64, max_waiting=4)
    seq = image_seq([1, 2, 3], "x", 10, [4, 5])
    sched.add(seq)
    plan = step(sched)
    assert plan.tokens == [1, 2, 3] and not plan.images and not plan.sample
    plan = step(sched)
    assert not plan.tokens and len(plan.images) == 1
    piece = plan.images[0]
    assert (piece.seq, piece.offset, piece.count) == (seq, 0, 10)
    plan = step(sched)
    assert plan.tokens == [4, 5] and plan.positions == [13, 14] and plan.sample == [(seq, 1)]
    assert sched.slots[seq.slot].cached == seq.prompt


def test_image_slices_share_the_budget_with_decode_rows() -> None:
    sched = Scheduler(n_slots=2, token_budget=8, max_waiting=4)
    seq = image_seq([], "x", 20, [7])
    sched.add(seq)
    counts = []
    while seq.n_computed < 20:
        plan = step(sched)
        counts += [(p.offset, p.count) for p in plan.images]
    assert counts == [(0, 8), (8, 8), (16, 4)]


def test_non_causal_image_goes_in_one_slice() -> None:
    sched = Scheduler(n_slots=1, token_budget=8, max_waiting=4)
    seq = image_seq([1], "x", 20, [7], non_causal=True)
    sched.add(seq)
    step(sched)
    plan = step(sched)
    assert [(p.offset, p.count) for p in plan.images] == [(0, 20)]


def test_prefix_reuse_stops_at_a_different_image() -> None:
    sched = Scheduler(n_slots=1, token_budget=64, max_waiting=4)
    first = image_seq([1, 2], "x", 5, [3, 4])
    sched.add(first)
    for _ in range(3):
        step(sched)
    sched.remove(first)
    same = image_seq([1, 2], "x", 5, [3, 4])
    sched.add(same)
    plan = step(sched)
    assert same.cached_tokens == 8 and plan.tokens == [4]  # all but the last token
    sched.remove(same)
    other = image_seq([1, 2], "y", 5, [3, 4])
    sched.add(other)
    plan = step(sched)
    assert other.cached_tokens == 2 and plan.trims == [(0, 2)]
    assert len(plan.images) == 0 or plan.images[0].offset == 0


def test_reuse_inside_an_image_is_cut_back_to_its_start() -> None:
    sched = Scheduler(n_slots=1, token_budget=8, max_waiting=4)
    first = image_seq([1], "x", 20, [3])
    sched.add(first)
    step(sched)
    step(sched)  # the first 8 rows of the image, then the sequence is cancelled
    sched.remove(first)
    assert len(sched.slots[0].cached) == 9
    again = image_seq([1], "x", 20, [3])
    sched.add(again)
    plan = step(sched)
    # Part of an image is not reused (a bidirectional image needs all of it in one decode).
    assert again.cached_tokens == 1 and plan.trims == [(0, 1)]
    assert [(p.offset, p.count) for p in plan.images] == [(0, 8)]


def test_positions_after_an_mrope_image_advance_by_its_n_pos() -> None:
    seq = image_seq([1, 2], "x", 16, [3, 4], n_pos=4)  # type: ignore[arg-type]
    assert [seq.position(i) for i in (0, 2, 17, 18, 19)] == [0, 2, 17, 6, 7]
    assert seq.text_until(0) == 2 and seq.text_until(18) == len(seq.prompt)
    assert seq.reusable(5) == 2 and seq.reusable(18) == 18
