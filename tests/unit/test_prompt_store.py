"""The prompt store (host-memory LRU of slot states) and the scheduler's saves and restores."""

from pathlib import Path

from modelserve.engine.prompt_spill import PromptSpill
from modelserve.engine.prompt_store import MIN_SAVE_TOKENS, PromptStore
from modelserve.engine.scheduler import Scheduler
from modelserve.engine.sequence import SamplingParams, Sequence


def seq(prompt: list[int], salt: str = "") -> Sequence:
    return Sequence(prompt=prompt, params=SamplingParams(max_tokens=4, cache_salt=salt),
                    sink=lambda out: None)


def test_longest_prefix_wins_and_extended_entries_are_replaced() -> None:
    store = PromptStore(capacity_bytes=1 << 20)
    store.put([1, 2, 3], b"abc")
    store.put([1, 2, 3, 4, 5], b"abcde")  # extends the first: it replaces it
    store.put([1, 9], b"x")
    assert len(store) == 2
    entry, shared = store.longest([1, 2, 3, 4, 7])
    assert entry is not None and entry.state == b"abcde" and shared == 4
    assert store.covers([1, 2, 3]) and not store.covers([1, 2, 6])
    assert store.longest([8]) == (None, 0)


def test_least_recently_used_entries_go_first() -> None:
    state = bytes(1000)
    store = PromptStore(capacity_bytes=2 * (1000 + 8 * 2) + 10)
    store.put([1, 2], state)
    store.put([3, 4], state)
    entry, _ = store.longest([1, 2])
    assert entry is not None
    store.touch(entry, restored_tokens=2)
    store.put([5, 6], state)  # over capacity: [3, 4] was used least recently
    assert store.longest([3, 4]) == (None, 0) and store.covers([1, 2])
    assert store.stats.evictions == 1 and store.stats.hits == 1
    assert store.bytes <= store.capacity_bytes
    store.put([7] * 10_000, state)  # bigger than the whole store: not kept
    assert not store.covers([7] * 10_000)


def test_a_slot_about_to_be_overwritten_is_saved_and_restored_later() -> None:
    store = PromptStore(capacity_bytes=1 << 30)
    sched = Scheduler(n_slots=1, token_budget=4096, max_waiting=4, store=store)
    history = list(range(1000, 1000 + MIN_SAVE_TOKENS + 40))
    first = seq(history)
    sched.add(first)
    sched.commit(sched.schedule())
    sched.remove(first)
    other = seq(list(range(5000, 5100)))
    sched.add(other)
    plan = sched.schedule()
    # the slot's tokens go to the store before the trim drops them
    assert plan.saves == [(0, history, "")] and plan.trims == [(0, 0)]
    store.put(history, b"state")  # what the runner does with the save
    sched.commit(plan)
    sched.remove(other)
    back = seq([*history, 7, 8])
    sched.add(back)
    plan = sched.schedule()
    assert [(slot, entry.state) for slot, entry in plan.restores] == [(0, b"state")]
    assert back.cached_tokens == len(history) and plan.tokens == [7, 8]
    assert plan.saves[0][1] == list(range(5000, 5100))  # the other prompt is saved in turn
    assert store.stats.restored_tokens == len(history)


def test_a_salted_prefix_is_reused_only_by_prompts_with_the_same_salt(
        tmp_path: Path) -> None:
    """Per-key scopes: neither the slot's KV, another slot's, nor the store's crosses them."""
    store = PromptStore(capacity_bytes=1 << 30)
    sched = Scheduler(n_slots=2, token_budget=4096, max_waiting=4, store=store)
    history = list(range(1000, 1000 + MIN_SAVE_TOKENS + 40))
    tenant_a = seq(history, salt="a")
    sched.add(tenant_a)
    sched.commit(sched.schedule())
    sched.remove(tenant_a)
    # another tenant with the very same prompt: no reuse from the slot, nor a copy of it
    tenant_b = seq([*history, 1], salt="b")
    sched.add(tenant_b)
    plan = sched.schedule()
    assert tenant_b.cached_tokens == 0 and plan.copies == [] and plan.restores == []
    # the slot it took (the lowest: the one holding a's tokens) saved them under a's salt
    assert plan.saves == [(0, history, "a")]
    store.put(history, b"state-a", "a")
    sched.commit(plan)
    sched.remove(tenant_b)
    assert store.longest(history, "")[0] is None  # the shared scope finds neither
    back = seq([*history, 7], salt="a")  # tenant a again: restored from its own entry
    sched.add(back)
    plan = sched.schedule()
    assert [(entry.state, entry.salt) for _, entry in plan.restores] == [(b"state-a", "a")]
    assert back.cached_tokens == len(history)
    # a spilled entry keeps its salt across a restart
    spilled = PromptStore(1 << 20, PromptSpill(tmp_path, "m", 1 << 30))
    spilled.put(history, b"s", "a")
    spilled.close()
    again = PromptStore(1 << 20, PromptSpill(tmp_path, "m", 1 << 30))
    assert again.longest(history, "b") == (None, 0)
    entry, shared = again.longest(history, "a")
    assert entry is not None and shared == len(history) and again.load(entry)
    again.close()


def test_short_prefixes_are_neither_saved_nor_restored() -> None:
    store = PromptStore(capacity_bytes=1 << 30)
    sched = Scheduler(n_slots=1, token_budget=4096, max_waiting=4, store=store)
    first = seq(list(range(10)))
    sched.add(first)
    sched.commit(sched.schedule())
    sched.remove(first)
    sched.add(seq([99]))
    assert sched.schedule().saves == []


def test_spilled_entries_outlive_the_store_and_stay_with_their_identity(tmp_path: Path) -> None:
    store = PromptStore(1 << 20, PromptSpill(tmp_path, "model-a", 1 << 30))
    store.put([1, 2, 3, 4], b"state-a")
    store.close()  # the writes are done
    again = PromptStore(1 << 20, PromptSpill(tmp_path, "model-a", 1 << 30))
    entry, shared = again.longest([1, 2, 3, 4, 5])
    assert entry is not None and shared == 4 and entry.state == b""  # on disk only
    assert again.load(entry) and entry.state == b"state-a"
    other = PromptStore(1 << 20, PromptSpill(tmp_path, "model-b", 1 << 30))
    assert other.longest([1, 2, 3, 4]) == (None, 0)
    again.close()
    other.close()


def test_a_spilled_file_that_is_not_its_entry_is_dropped(tmp_path: Path) -> None:
    spill = PromptSpill(tmp_path, "model-a", 1 << 30)
    store = PromptStore(1 << 20, spill)
    store.put([1, 2, 3], b"state")
    store.close()
    path = next((tmp_path / "model-a").glob("*.kv"))
    # another model's file put in this folder: its header names the other identity
    PromptSpill(tmp_path, "model-b", 1 << 30).close()
    header_of_b = path.read_bytes().replace(b'"model-a"', b'"model-b"')
    path.write_bytes(header_of_b)
    reopened = PromptStore(1 << 20, PromptSpill(tmp_path, "model-a", 1 << 30))
    assert len(reopened) == 0 and not path.exists()
    reopened.close()


def test_memory_evicts_spilled_states_to_disk_and_reads_them_back(tmp_path: Path) -> None:
    state = bytes(1000)
    spill = PromptSpill(tmp_path, "m", 1 << 30)
    store = PromptStore(1000 + 100, spill)
    store.put([1, 2], state)
    store.put([3, 4], state)  # memory holds one state: [1, 2] goes to disk only
    first, _ = store.longest([1, 2])
    assert first is not None and first.state == b"" and len(store) == 2
    spill.flush()
    assert store.load(first) and first.state == state
    assert store.bytes <= store.capacity_bytes
    store.close()


def test_prompts_sharing_a_prefix_being_prefilled_wait_for_it_then_copy_it() -> None:
    sched = Scheduler(n_slots=3, token_budget=64, max_waiting=8)
    system = list(range(1000, 1300))
    first, second = seq([*system, 1, 2]), seq([*system, 3, 4])
    other = seq(list(range(5000, 5010)))
    for s in (first, second, other):
        sched.add(s)
    plan = sched.schedule()
    # the second waits for the first to compute the shared part; the unrelated one goes on
    assert first.slot >= 0 and other.slot >= 0 and second.slot == -1
    sched.commit(plan)
    while first.n_computed < len(system):
        plan = sched.schedule()
        sched.commit(plan)
    plan = sched.schedule()
    assert plan.copies == [(first.slot, second.slot)]
    assert second.cached_tokens == len(system)
    assert plan.trims == [(second.slot, len(system))]  # the copy is cut back to what is shared


def test_a_copy_is_cut_back_even_when_its_donor_is_trimmed_in_the_same_step() -> None:
    """The copy takes the donor's cells before the donor's own trim runs (runner order), so
    the copied slot must be cut back by a trim of its own, or its KV holds more positions
    than the scheduler believes (llama_decode then refuses the batch)."""
    sched = Scheduler(n_slots=2, token_budget=4096, max_waiting=8)
    prompt = list(range(100, 140))
    done = seq([*prompt, 7, 8, 9])
    sched.add(done)
    sched.commit(sched.schedule())
    sched.remove(done)  # slot 0 holds prompt + 7, 8, 9
    first, second = seq([*prompt, 1]), seq([*prompt, 2])
    sched.add(first)
    sched.add(second)
    plan = sched.schedule()
    assert first.slot == 0 and plan.trims[0] == (0, len(prompt))
    assert plan.copies == [(0, second.slot)]
    assert (second.slot, len(prompt)) in plan.trims
