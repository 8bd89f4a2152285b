"""Drafting for speculative decoding (pure logic) and how the scheduler plans and commits
drafted rows."""

from types import SimpleNamespace

from pytest import approx

from modelserve.engine.model_runner import ModelRunner
from modelserve.engine.scheduler import Scheduler
from modelserve.engine.sequence import SamplingParams, Sequence, SequenceStatus
from modelserve.engine.speculation import (
    MIN_DRAFT,
    PAUSE_STEPS,
    NgramIndex,
    acceptance_at_load,
    row_cost,
    start_drafting,
    step_time,
)


def test_prompt_lookup_continues_the_latest_earlier_occurrence() -> None:
    index = NgramIndex([1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8])
    # the suffix (2, 3) occurred twice; the latest continuation is 7, 8
    at, tokens = index.continuation([5, 2, 3], limit=4)
    assert tokens == [7, 8] and at == 9
    # the longest n-gram decides: (1, 2, 3, 4)... is not a suffix, (9, 1, 2, 3) is
    assert index.continuation([9, 1, 2, 3], limit=2)[1] == [7, 8]
    assert index.continuation([42, 43], limit=2) == (-1, [])


def test_lookup_after_an_index_prefers_the_next_occurrence() -> None:
    index = NgramIndex([1, 2, 10, 1, 2, 20, 1, 2, 30])
    assert index.continuation([1, 2], 1, after=3)[1] == [20]
    assert index.continuation([1, 2], 1, after=99)[1] == [30]  # none after: the latest


def test_drafts_come_from_the_prompt_and_grow_while_accepted() -> None:
    state = start_drafting([5, 6, 7, 8, 9, 10, 11, 12, 13, 14], (), ngram=True)
    state.record([], 0, [5, 6], max_length=16)  # the output starts quoting the prompt
    draft = state.draft([5, 6], limit=100, max_length=16)
    assert draft == [7, 8, 9, 10]
    state.record(draft, 4, [*draft, 11], max_length=16)
    assert state.length == 8
    assert state.draft([5, 6, *draft, 11], limit=3, max_length=16) == [12, 13, 14]


def test_poor_acceptance_pauses_drafting() -> None:
    state = start_drafting([1, 2, 3, 4, 5, 6] * 4, (), ngram=True)
    output = [1, 2]
    state.record([], 0, output, max_length=16)
    for _ in range(20):
        draft = state.draft(output, limit=100, max_length=16)
        if not draft:
            break
        state.record(draft, 0, [99], max_length=16)  # always wrong
        output.append(99)
        output += [1, 2]
        state.history.extend([1, 2])
    assert state.pause == PAUSE_STEPS or state.pause == PAUSE_STEPS - 1
    assert state.draft(output, limit=100, max_length=16) == []


def test_prediction_is_followed_and_refound_after_an_edit() -> None:
    prediction = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
    state = start_drafting([1, 2], prediction, ngram=False)
    draft = state.draft([], limit=100, max_length=4)
    assert draft == [10, 11, 12, 13] and state.last_from_prediction
    state.record(draft, 4, [*draft, 14], max_length=4)
    assert state.accepted_prediction == 4
    # the output then differs (an edit: 99 instead of 15), and comes back to the prediction
    output = [10, 11, 12, 13, 14]
    state.draft(output, limit=100, max_length=4)
    state.record([15, 16, 17, 18], 0, [99], max_length=4)
    output.append(99)
    assert state.draft(output, limit=100, max_length=4) == []  # lost, nothing to follow
    state.record([], 0, [16, 17], max_length=4)
    output += [16, 17]
    # re-found after (16, 17); the rejected draft halved the length
    assert state.draft(output, limit=100, max_length=4) == [18, 19]


def test_image_pseudo_tokens_are_never_drafted() -> None:
    state = start_drafting([1, 2, 3, 4, -7, -7, 5], (), ngram=True)
    state.record([], 0, [1, 2], max_length=16)
    assert state.draft([1, 2], limit=100, max_length=16) == [3, 4]
    short = start_drafting([1, 2, 3, -7, -7, 5], (), ngram=True)
    short.record([], 0, [1, 2], max_length=16)
    assert len([3]) < MIN_DRAFT and short.draft([1, 2], limit=100, max_length=16) == []


def greedy(prompt: list[int], max_tokens: int = 32) -> Sequence:
    return Sequence(prompt=prompt, params=SamplingParams(max_tokens=max_tokens, temperature=0),
                    sink=lambda out: None)


def test_drafted_rows_follow_the_sampled_row_and_rejected_ones_are_not_committed() -> None:
    sched = Scheduler(n_slots=1, token_budget=64, max_waiting=4, draft_max=8)
    seq = greedy([5, 6, 7, 8, 9, 5, 6])
    seq.drafting = start_drafting(seq.prompt, (), ngram=True)
    sched.add(seq)
    plan = sched.schedule()
    sched.commit(plan)
    seq.output.append(7)  # the model quotes its prompt
    seq.drafting.record([], 0, [7], max_length=8)
    seq.status = SequenceStatus.DECODING
    plan = sched.schedule()
    assert plan.drafts[seq.id] == [8, 9, 5, 6]
    assert plan.tokens == [7, 8, 9, 5, 6] and plan.positions == [7, 8, 9, 10, 11]
    assert plan.sample == [(seq, 0)] and all(plan.want_logits)
    sched.commit(plan, rejected={seq.slot: 2})  # 8 and 9 accepted, 5 and 6 not
    assert seq.n_computed == 10 and sched.slots[0].cached == [5, 6, 7, 8, 9, 5, 6, 7, 8, 9]


def test_no_drafts_past_max_tokens_nor_for_sampled_requests() -> None:
    sched = Scheduler(n_slots=1, token_budget=64, max_waiting=4, draft_max=8)
    for max_tokens, drafted in ((3, None), (4, [8, 9])):
        seq = greedy([5, 6, 7, 8, 9, 5, 6], max_tokens=max_tokens)
        seq.drafting = start_drafting(seq.prompt, (), ngram=True)
        sched.add(seq)
        sched.commit(sched.schedule())
        seq.output.append(7)
        seq.drafting.record([], 0, [7], max_length=8)
        seq.status = SequenceStatus.DECODING
        # the last token before max_tokens is sampled from the last drafted row's logits
        assert sched.schedule().drafts.get(seq.id) == drafted
        sched.remove(seq)
    assert not SamplingParams(max_tokens=4, temperature=0.7).plain_greedy
    assert not SamplingParams(max_tokens=4, temperature=0, repeat_penalty=1.1).plain_greedy


def test_prefill_budget_limits_prompt_rows_only_while_streams_decode() -> None:
    sched = Scheduler(n_slots=2, token_budget=64, max_waiting=4, prefill_budget=8)
    a, b = greedy(list(range(100, 140))), greedy(list(range(200, 240)))
    sched.add(a)
    plan = sched.schedule()
    sched.commit(plan)
    assert len(plan) == 40  # alone: the whole budget
    a.output.append(1)
    a.status = SequenceStatus.DECODING
    sched.add(b)
    plan = sched.schedule()
    assert len(plan) == 1 + 8


def decoding_drafters(sched: Scheduler, count: int) -> list[Sequence]:
    """`count` sequences decoding in `sched`, each with a prompt-lookup draft ready."""
    seqs = [greedy([5, 6, 7, 8, 9, 5, 6]) for _ in range(count)]
    for seq in seqs:
        seq.drafting = start_drafting(seq.prompt, (), ngram=True)
        sched.add(seq)
    sched.commit(sched.schedule())
    for seq in seqs:
        seq.output.append(7)
        assert seq.drafting is not None
        seq.drafting.record([], 0, [7], max_length=8)
        seq.status = SequenceStatus.DECODING
    return seqs


def test_nobody_drafts_while_more_than_draft_streams_sequences_decode() -> None:
    sched = Scheduler(n_slots=3, token_budget=64, max_waiting=4, draft_max=8, draft_streams=2)
    seqs = decoding_drafters(sched, 3)
    assert sched.schedule().drafts == {}  # three decode: more than the operator allows
    sched.remove(seqs[2])
    assert set(sched.schedule().drafts) == {seqs[0].id, seqs[1].id}


# Decode times (ms by rows in one llama_decode) measured on 2 AVX-512 cores, and a GPU's shape.
SMOLLM2 = {1: 7.7, 2: 13.8, 4: 20.4, 8: 34.3, 16: 65.5, 32: 122.2, 64: 227.7}
QWEN = {1: 18.9, 2: 39.4, 4: 48.9, 8: 77.8, 16: 114.8, 32: 193.6, 64: 369.7}
GPU = {1: 10.0, 2: 10.1, 4: 10.2, 8: 10.4, 16: 10.8, 32: 11.6, 64: 13.2}


def test_step_times_between_and_beyond_the_measured_sizes() -> None:
    assert step_time(QWEN, 16) == 114.8
    assert step_time(QWEN, 12) == (77.8 + 114.8) / 2
    assert step_time(QWEN, 128) == 369.7 + 64 * (369.7 - 193.6) / 32  # the last slope
    assert step_time({1: 2.0}, 5) == 10.0
    assert round(row_cost(SMOLLM2), 2) == 0.49 and row_cost(GPU) < 0.01


def test_the_acceptance_drafts_need_grows_with_the_streams_a_step_carries() -> None:
    def needs(times: dict[int, float]) -> list[float | None]:
        return [acceptance_at_load(times, n, 32) for n in (1, 4, 6, 8, 16)]

    smol, qwen, gpu = needs(SMOLLM2), needs(QWEN), needs(GPU)
    assert smol[0] == approx(0.6, abs=0.01) and smol[1] == approx(0.83, abs=0.01)
    assert smol[2:] == [None, None, None]  # ~5 streams at most
    # Qwen's kernels get cheaper per row past 8 rows: eight streams need ~61 %.
    assert qwen[0] == approx(0.37, abs=0.01) and qwen[3] == approx(0.61, abs=0.01)
    assert qwen[4] is None
    assert gpu == [0.1] * 5  # rows nearly free: drafts pay at any batch
    # A lone stream is never refused, only held to the ceiling.
    assert acceptance_at_load({1: 1.0, 64: 64.0}, 1, 32) == 0.9
    assert acceptance_at_load({1: 1.0, 64: 64.0}, 2, 32) is None


def test_the_measured_decode_times_decide_who_drafts_and_what_they_must_reach() -> None:
    cheap = Scheduler(n_slots=4, token_budget=64, max_waiting=4, draft_max=8)
    cheap.use_decode_times(QWEN)
    seqs = decoding_drafters(cheap, 4)
    assert set(cheap.schedule().drafts) == {seq.id for seq in seqs}
    need = acceptance_at_load(QWEN, 4, 8)
    assert all(seq.drafting is not None and seq.drafting.load_accept == need for seq in seqs)
    dear = Scheduler(n_slots=6, token_budget=64, max_waiting=4, draft_max=8)
    dear.use_decode_times(SMOLLM2)
    decoding_drafters(dear, 6)
    assert dear.schedule().drafts == {}  # six streams: no draft can pay


def test_a_draft_short_of_what_the_load_needs_pauses() -> None:
    alone, loaded = (start_drafting(list(range(50)) * 2, (), ngram=True, min_accept=0.15)
                     for _ in range(2))
    loaded.load_accept = 0.65
    for state in (alone, loaded):
        state.record([1] * 16, 9, [1] * 10, max_length=16)  # 56 %: enough alone, not for 8
    assert (alone.pause, loaded.pause) == (0, PAUSE_STEPS)


def test_decode_times_stop_after_about_a_second_and_at_the_batch_size() -> None:
    class Clock:
        """A context whose decode of n rows takes `per_row` x n seconds."""

        def __init__(self, per_row: float) -> None:
            self.per_row = per_row
            self.timed: list[int] = []

        def time_decode(self, rows: int, repeats: int) -> float:
            self.timed.append(rows)
            return self.per_row * rows

    def timed(per_row: float, batch_size: int = 512) -> list[int]:
        ctx = Clock(per_row)
        ModelRunner.decode_times(SimpleNamespace(ctx=ctx, batch_size=batch_size))  # type: ignore[arg-type]
        return ctx.timed

    assert timed(0.001) == [1, 2, 4, 8, 16, 32]  # a small model: every size
    assert timed(0.3) == [1, 2]  # a big one: the first two, then extrapolation
    assert timed(0.001, batch_size=16) == [1, 2, 4, 8, 16]
