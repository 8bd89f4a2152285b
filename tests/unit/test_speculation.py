"""Drafting for speculative decoding (pure logic) and how the scheduler plans and commits
drafted rows."""

from modelserve.engine.scheduler import Scheduler
from modelserve.engine.sequence import SamplingParams, Sequence, SequenceStatus
from modelserve.engine.speculation import (
    MIN_DRAFT,
    PAUSE_STEPS,
    NgramIndex,
    start_drafting,
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


def test_nobody_drafts_while_more_than_draft_streams_sequences_decode() -> None:
    sched = Scheduler(n_slots=3, token_budget=64, max_waiting=4, draft_max=8, draft_streams=2)
    seqs = [greedy([5, 6, 7, 8, 9, 5, 6]) for _ in range(3)]
    for seq in seqs:
        seq.drafting = start_drafting(seq.prompt, (), ngram=True)
        sched.add(seq)
    sched.commit(sched.schedule())
    for seq in seqs:
        seq.output.append(7)
        assert seq.drafting is not None
        seq.drafting.record([], 0, [7], max_length=8)
        seq.status = SequenceStatus.DECODING
    assert sched.schedule().drafts == {}  # three decode: rows are not cheap
    sched.remove(seqs[2])
    assert set(sched.schedule().drafts) == {seqs[0].id, seqs[1].id}
