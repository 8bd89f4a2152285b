import pytest

from modelserve.engine.scheduler import Scheduler, common_prefix_len
from modelserve.engine.sequence import SamplingParams, Sequence, SequenceStatus
from modelserve.failures import QueueFull
from tests.conftest import step


def seq(prompt: list[int]) -> Sequence:
    return Sequence(prompt=prompt, params=SamplingParams(max_tokens=4), sink=lambda out: None)


def test_common_prefix_len() -> None:
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0


def test_decode_rows_come_first_and_prefill_is_chunked() -> None:
    sched = Scheduler(n_slots=2, token_budget=8, max_waiting=4)
    a, b = seq([1, 2, 3]), seq(list(range(10, 30)))
    sched.add(a)
    plan = step(sched)
    assert plan.tokens == [1, 2, 3] and plan.sample == [(a, 2)]
    a.output.append(99)
    a.status = SequenceStatus.DECODING
    sched.add(b)
    plan = step(sched)
    # a's decode row first, then 7 prompt tokens of b (budget 8), no logits for b yet
    assert plan.tokens[0] == 99 and plan.positions[0] == 3
    assert plan.tokens[1:] == list(range(10, 17))
    assert plan.sample == [(a, 0)]
    plan = step(sched)
    assert plan.tokens[:1] == [99]  # a not sampled again in this fake, row stays
    assert len(plan) == 8


def test_prefix_reuse_picks_best_slot_and_trims() -> None:
    sched = Scheduler(n_slots=2, token_budget=64, max_waiting=4)
    first = seq([5, 6, 7, 8])
    sched.add(first)
    step(sched)
    sched.remove(first)
    again = seq([5, 6, 7, 9, 10])
    sched.add(again)
    plan = step(sched)
    assert again.slot == first.slot and again.cached_tokens == 3
    assert plan.trims == [(first.slot, 3)]
    assert plan.tokens == [9, 10] and plan.positions == [3, 4]


def test_identical_prompt_recomputes_last_token_for_logits() -> None:
    sched = Scheduler(n_slots=1, token_budget=64, max_waiting=4)
    first = seq([1, 2, 3])
    sched.add(first)
    step(sched)
    sched.remove(first)
    second = seq([1, 2, 3])
    sched.add(second)
    plan = step(sched)
    assert second.cached_tokens == 2 and plan.tokens == [3] and plan.sample == [(second, 0)]


def test_queue_bound_counts_free_slots() -> None:
    sched = Scheduler(n_slots=1, token_budget=64, max_waiting=1)
    sched.add(seq([1]))
    sched.add(seq([2]))
    with pytest.raises(QueueFull):
        sched.add(seq([3]))


def test_remove_waiting_and_unknown() -> None:
    sched = Scheduler(n_slots=1, token_budget=64, max_waiting=2)
    s = seq([1])
    sched.add(s)
    assert sched.remove(s)
    assert not sched.remove(s)
    assert not sched.has_work()


def test_slot_choice_keeps_running_slots_packed() -> None:
    from modelserve.engine.scheduler import REUSE_WORTH_A_GAP

    sched = Scheduler(n_slots=3, token_budget=4096, max_waiting=4)
    short, long_ = list(range(100, 110)), list(range(1000, 1000 + REUSE_WORTH_A_GAP + 10))
    sched.slots[2].cached = short[:5]
    s = seq(short)
    sched.add(s)
    step(sched)
    assert s.slot == 0  # a 5-token prefix is not worth a hole at slot 0
    sched.slots[2].cached = long_[:-1]
    t = seq([*long_, 7])
    sched.add(t)
    step(sched)
    assert t.slot == 2 and t.cached_tokens == len(long_) - 1


def test_rows_follow_slot_order() -> None:
    sched = Scheduler(n_slots=2, token_budget=64, max_waiting=4)
    first, second = seq([1, 2]), seq([3, 4])
    sched.add(first)
    sched.add(second)
    step(sched)
    for s, token in ((first, 50), (second, 60)):
        s.output.append(token)
        s.status = SequenceStatus.DECODING
    sched.remove(first)
    third = seq([5, 6, 7])
    sched.add(third)  # lands in slot 0, before `second` in slot 1
    plan = step(sched)
    assert plan.seq_ids == [0, 0, 0, 1] and plan.tokens == [5, 6, 7, 60]
