"""Slot bookkeeping and batch planning for continuous batching (pure logic, no llama.cpp).

Each step the scheduler admits waiting sequences into free slots (reusing the longest cached
token prefix), then plans ONE batch: one row per decoding sequence (plus its drafted tokens
when it speculates, engine/speculation.py), then prefill chunks of admitted prompts. While
streams decode, prompts get at most `prefill_budget` rows a step, so a long prompt never
stalls running streams for long. Planning records no progress: once the runner has run the
plan, `commit` moves each sequence's computed count and each slot's cached tokens on, except
in the slots whose step failed and for the drafted rows the model rejected.

Image chunks of a prompt are embeddings, not tokens, and llama_decode cannot mix the two in
one batch: the plan lists them apart (`images`), as slices that share the same budget, and the
engine evaluates each in its own decode right after the token batch. A sequence's text runs
up to its next image; the image comes in a later step, then the text after it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from modelserve.engine.prompt_store import (
    MIN_RESTORE_GAIN,
    MIN_SAVE_TOKENS,
    PromptStore,
    StoredPrefix,
)
from modelserve.engine.sequence import ImageSpan, Sequence, SequenceStatus
from modelserve.engine.speculation import DecodeTimes, acceptance_at_load
from modelserve.failures import QueueFull

# A running set with a hole in its slot ids costs an extra pass over the weights on every
# step (see `schedule`), so a far-off slot is chosen for its cached prefix only when that
# saves at least this many prompt tokens over the lowest free slot.
REUSE_WORTH_A_GAP = 256
# A prompt waits for another slot's prefill of the prefix they share only when it is at least
# this long (a system prompt many users share), then copies it.
WAIT_FOR_PREFIX_TOKENS = 256


@dataclass
class Slot:
    id: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV the slot holds
    salt: str = ""  # the scope of that KV: reused only by sequences with the same salt
    seq: Sequence | None = None
    last_used: int = 0


@dataclass(frozen=True)
class ImageSlice:
    """Rows [offset, offset + count) of one image span, to evaluate into the sequence's slot."""

    seq: Sequence
    span: ImageSpan
    offset: int
    count: int


@dataclass
class BatchPlan:
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    seq_ids: list[int] = field(default_factory=list)
    want_logits: list[bool] = field(default_factory=list)
    sample: list[tuple[Sequence, int]] = field(default_factory=list)  # (seq, batch row)
    # seq id -> its drafted tokens, in the rows right after its sample row
    drafts: dict[int, list[int]] = field(default_factory=dict)
    trims: list[tuple[int, int]] = field(default_factory=list)  # (slot, drop KV from pos)
    # Before the trims: slots whose KV goes to the prompt store, keyed by the tokens they
    # hold; then entries of the store restored into slots (the trims may cut them back).
    saves: list[tuple[int, list[int], str]] = field(default_factory=list)  # slot, tokens, salt
    restores: list[tuple[int, StoredPrefix]] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)  # (from slot, to slot)
    images: list[ImageSlice] = field(default_factory=list)  # evaluated after the token batch

    def add(self, seq: Sequence, token: int, index: int, logits: bool,
            sample: bool = True) -> None:
        """A row for the token at `index` of the sequence (prompt, then output, then drafts:
        those want logits, but are sampled with their sequence's row)."""
        if logits and sample:
            self.sample.append((seq, len(self.tokens)))
        self.tokens.append(token)
        self.positions.append(seq.position(index))
        self.seq_ids.append(seq.slot)
        self.want_logits.append(logits)

    def __len__(self) -> int:
        return len(self.tokens)


def shared_prefix(slot: Slot, seq: Sequence) -> int:
    """The prompt tokens of `seq` whose KV `slot` holds: none from another scope."""
    return common_prefix_len(slot.cached, seq.prompt) \
        if slot.salt == seq.params.cache_salt else 0


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Scheduler:
    def __init__(self, n_slots: int, token_budget: int, max_waiting: int,
                 prefill_budget: int | None = None, draft_max: int = 0,
                 store: PromptStore | None = None, draft_streams: int | None = None) -> None:
        self.slots = [Slot(i) for i in range(n_slots)]
        self.store = store
        self.token_budget = token_budget
        self.prefill_budget = prefill_budget or token_budget
        self.draft_max = draft_max  # 0: no speculation
        # Drafting pays while drafted rows are cheap next to the step they join, which on a
        # CPU means few decoding sequences: [n] is the acceptance drafts need while n decode,
        # None where none can pay (set from decode times measured at warm-up; until then
        # only each sequence's own rule applies).
        self.draft_needs: list[float | None] | None = None
        self.draft_streams = draft_streams  # an operator's cap on top; None: the cost decides
        self.max_waiting = max_waiting
        self.waiting: deque[Sequence] = deque()
        self._clock = 0

    @property
    def running(self) -> list[Sequence]:
        return [s.seq for s in self.slots if s.seq is not None]

    def has_work(self) -> bool:
        return bool(self.waiting) or any(s.seq is not None for s in self.slots)

    def add(self, seq: Sequence) -> None:
        if len(self.waiting) >= self.max_waiting + len(self._free_slots()):
            raise QueueFull
        self.waiting.append(seq)

    def remove(self, seq: Sequence) -> bool:
        """Take a sequence out (finished or cancelled); its slot keeps the KV for reuse."""
        if seq.status is SequenceStatus.WAITING:
            try:
                self.waiting.remove(seq)
            except ValueError:
                return False
            return True
        if 0 <= seq.slot < len(self.slots) and self.slots[seq.slot].seq is seq:
            self.slots[seq.slot].seq = None
            return True
        return False

    def schedule(self) -> BatchPlan:
        plan = BatchPlan()
        self._admit(plan)
        running = self.running  # in slot order
        # Every decoding sequence gets its row, then its drafts; prompts share what is left
        # of the budget (at most `prefill_budget` while streams wait on this step), first
        # come first served.
        decoding = [s for s in running if s.status is SequenceStatus.DECODING]
        budget = self.token_budget - len(decoding)
        for seq in self._drafting(decoding):
            draft = self._draft(seq, budget)
            if draft:
                plan.drafts[seq.id] = draft
                budget -= len(draft)
        if decoding:
            budget = min(budget, self.prefill_budget)
        chunk: dict[int, int] = {}
        for seq in sorted(running, key=lambda s: s.id):
            if seq.status is not SequenceStatus.PREFILLING or budget <= 0:
                continue
            span = seq.image_at(seq.n_computed)
            if span is None:
                chunk[seq.id] = min(seq.text_until(seq.n_computed) - seq.n_computed, budget)
                budget -= chunk[seq.id]
                continue
            left = span.end - seq.n_computed
            # An image that attends both ways must go in one decode, whatever the budget.
            count = left if span.non_causal else min(left, budget)
            plan.images.append(ImageSlice(seq, span, seq.n_computed - span.start, count))
            budget -= count
        # Rows go in slot order: llama.cpp splits a multi-stream batch wherever consecutive
        # rows do not belong to consecutive sequence ids, and every split is another pass
        # over the weights.
        for seq in running:
            if seq.status is SequenceStatus.DECODING:
                plan.add(seq, seq.output[-1], seq.n_computed, logits=True)
                for i, token in enumerate(plan.drafts.get(seq.id, ()), seq.n_computed + 1):
                    plan.add(seq, token, i, logits=True, sample=False)
            start = seq.n_computed
            for index in range(start, start + chunk.get(seq.id, 0)):
                plan.add(seq, seq.prompt[index], index, logits=index + 1 == len(seq.prompt))
        return plan

    def use_decode_times(self, times: DecodeTimes) -> None:
        """Derive what drafts need at each number of decoding sequences (one per slot at
        most) from decode times measured on this machine (speculation.acceptance_at_load)."""
        needs: list[float | None] = [None]  # (no sequence decoding: nothing to draft)
        needs += (acceptance_at_load(times, n, self.draft_max)
                  for n in range(1, len(self.slots) + 1))
        self.draft_needs = needs

    def _drafting(self, decoding: list[Sequence]) -> list[Sequence]:
        """The decoding sequences that may draft this step, each told what its drafts must
        reach while this many decode."""
        n = len(decoding)
        if not self.draft_max or (self.draft_streams is not None and n > self.draft_streams):
            return []
        need = 0.0 if self.draft_needs is None else self.draft_needs[n]
        if need is None:
            return []
        for seq in decoding:
            if seq.drafting is not None:
                seq.drafting.load_accept = need
        return decoding

    def _draft(self, seq: Sequence, budget: int) -> list[int]:
        if seq.drafting is None:  # (_drafting has checked draft_max)
            return []
        # Never past max_tokens: the last drafted token's own logits would go unused.
        limit = min(budget - 1, seq.params.max_tokens - len(seq.output) - 1)
        return seq.drafting.draft(seq.output, limit, self.draft_max)

    def commit(self, plan: BatchPlan, failed_slots: set[int] | frozenset[int] = frozenset(),
               rejected: dict[int, int] | None = None) -> None:
        """Record what the runner computed: each row's token is in its slot's KV now, and each
        image slice's rows. A failed slot's KV is unknown, so it keeps nothing to reuse.
        `rejected` (slot -> n): the runner dropped the KV of that slot's last n drafted rows."""
        keep = {slot_id: plan.seq_ids.count(slot_id) - n
                for slot_id, n in (rejected or {}).items()}
        for token, slot_id in zip(plan.tokens, plan.seq_ids, strict=True):
            slot = self.slots[slot_id]
            if slot_id in keep:
                keep[slot_id] -= 1
                if keep[slot_id] < 0:
                    continue
            if slot_id not in failed_slots and slot.seq is not None:
                slot.cached.append(token)
                slot.seq.n_computed += 1
        for piece in plan.images:
            if piece.seq.slot in failed_slots:
                continue
            start = piece.seq.n_computed
            self.slots[piece.seq.slot].cached += piece.seq.prompt[start : start + piece.count]
            piece.seq.n_computed += piece.count
        for slot_id in failed_slots:
            self.slots[slot_id].cached.clear()

    def _save(self, plan: BatchPlan, slot: Slot, keep: int) -> None:
        """The slot is about to lose its cached tokens past `keep`: save them to the store
        first, when they are many and no entry holds them already."""
        if (self.store is not None and len(slot.cached) - keep >= MIN_SAVE_TOKENS
                and not self.store.covers(slot.cached, slot.salt)):
            plan.saves.append((slot.id, list(slot.cached), slot.salt))

    def _free_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.seq is None]

    @staticmethod
    def _pick_slot(free: list[Slot], seq: Sequence) -> Slot:
        """The lowest free slot keeps running slots packed; a better cached prefix elsewhere
        wins only when it saves REUSE_WORTH_A_GAP tokens."""
        packed = free[0]
        best = max(free, key=lambda s: (shared_prefix(s, seq), -s.last_used))
        gain = shared_prefix(best, seq) - shared_prefix(packed, seq)
        return best if gain >= REUSE_WORTH_A_GAP else packed

    def _admit(self, plan: BatchPlan) -> None:
        deferred: list[Sequence] = []
        while self.waiting:
            free = self._free_slots()
            if not free:
                break
            seq = self.waiting.popleft()
            if self._prefix_coming(seq):
                deferred.append(seq)
                continue
            self._place(plan, seq, self._pick_slot(free, seq))
        self.waiting.extendleft(reversed(deferred))

    def _prefix_coming(self, seq: Sequence) -> bool:
        """Whether a prompt being prefilled in a slot shares a long prefix with this one that
        is not computed yet: then this one waits a step or two and copies it (sixteen users
        arriving together with one system prompt compute it once, not sixteen times)."""
        salt = seq.params.cache_salt
        coming = max((common_prefix_len(other.prompt, seq.prompt) for other in self.running
                      if other.status is SequenceStatus.PREFILLING
                      and other.params.cache_salt == salt), default=0)
        # Only for long prefixes: a short prompt costs less to compute than a step's wait.
        if coming < max(len(seq.prompt) // 2, WAIT_FOR_PREFIX_TOKENS):
            return False
        have = max(shared_prefix(s, seq) for s in self.slots)
        if self.store is not None:
            have = max(have, self.store.longest(seq.prompt, salt)[1])
        return coming >= have + MIN_RESTORE_GAIN

    def _place(self, plan: BatchPlan, seq: Sequence, slot: Slot) -> None:
        """Put the sequence in the slot, starting from the longest prefix it can have: the
        slot's own, another slot's (copied) or the store's (restored)."""
        # Keep at least one prompt token to compute, so there are logits to sample.
        most = len(seq.prompt) - 1
        salt = seq.params.cache_salt
        reuse = seq.reusable(min(shared_prefix(slot, seq), most))
        entry, stored = self.store.longest(seq.prompt, salt) if self.store else (None, 0)
        stored = seq.reusable(min(stored, most))
        # Another slot may hold the prefix (16 users sharing one system prompt): copy it.
        donor = max((s for s in self.slots if s is not slot), default=None,
                    key=lambda s: shared_prefix(s, seq))
        copied = seq.reusable(min(shared_prefix(donor, seq), most)) \
            if donor is not None else 0
        if donor is not None and copied >= max(reuse, stored) + MIN_RESTORE_GAIN:
            self._save(plan, slot, keep=0)
            plan.copies.append((donor.id, slot.id))
            # The copy takes all the donor's cells, which may be more than its list says now
            # (a trim of the donor planned this step runs after the copy): cut back always.
            plan.trims.append((slot.id, seq.position(copied)))
            slot.cached = donor.cached[:copied]
            reuse = copied
        elif entry is not None and stored >= reuse + MIN_RESTORE_GAIN and \
                self.store is not None and self.store.load(entry):
            self._save(plan, slot, keep=0)
            plan.restores.append((slot.id, entry))
            slot.cached = entry.tokens.tolist()
            self.store.touch(entry, stored)
            reuse = stored
        else:
            self._save(plan, slot, keep=reuse)
        if reuse < len(slot.cached):
            plan.trims.append((slot.id, seq.position(reuse)))
            del slot.cached[reuse:]
        self._clock += 1
        slot.last_used = self._clock
        slot.salt = salt  # what it holds now is this sequence's (its own prefix, or nothing)
        slot.seq = seq
        seq.slot = slot.id
        seq.n_computed = seq.cached_tokens = reuse
        seq.status = SequenceStatus.PREFILLING
