"""The engine loop: one thread per chat model, ONE llama_decode per step for all sequences.

The loop orchestrates, nano-vllm style: under the lock it applies aborts and asks the scheduler
for a plan; without the lock the runner executes the plan (decode, sample, images); under the
lock again the scheduler commits the step's progress and the loop turns each sampled token into
an output (text, stop strings, end of generation, max_tokens) for the sequence's consumer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from modelserve.engine.detokenizer import IncrementalText
from modelserve.engine.model_runner import Sampled, StepResult
from modelserve.engine.prompt_store import MIN_SAVE_TOKENS, PromptStore
from modelserve.engine.scheduler import BatchPlan, Scheduler
from modelserve.engine.sequence import Sequence, SequenceStatus, StepOutput
from modelserve.engine.speculation import (
    MIN_ACCEPT_RATE,
    DecodeTimes,
    acceptance_needed,
    row_cost,
    start_drafting,
)
from modelserve.failures import UNAVAILABLE, WorkerDied

logger = logging.getLogger(__name__)

# A draft model whose guesses would have to be accepted more often than this to pay is not used:
# a good draft model agrees 60-80 % of the time, and one that must do better stays a loss on
# most text (measured: SmolLM2 with its first 8 layers as draft, needing 87 % on 2 cores,
# decoded at 0.69-0.85x of no speculation).
MAX_MODEL_ACCEPT = 0.75
# Prompt-lookup drafts are guesses, mostly rejected in free text: `auto` makes them only where
# a drafted row costs less than this fraction of a step (measured: SmolLM2 on 2 AVX2 cores
# 0.56, where n-gram drafting cost 8 streams of stories 20 % of their throughput).
NGRAM_ROW_COST = 0.25


@dataclass
class EngineStats:
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reused_prompt_tokens: int = 0
    cancelled: int = 0
    decode_seconds: float = 0.0  # inside llama_decode
    step_seconds: float = 0.0  # whole steps: decode + sampling + hand-off
    running: int = 0
    waiting: int = 0
    kv_used_tokens: int = 0  # cells holding a running sequence or a reusable prefix
    kv_capacity_tokens: int = 0
    draft_tokens: int = 0  # drafted tokens verified (speculative decoding)
    accepted_draft_tokens: int = 0  # of which the model agreed with
    stored_prompts: int = 0  # prompt store: entries, and the bytes they take
    stored_prompt_bytes: int = 0
    stored_prompt_saves: int = 0
    stored_prompt_hits: int = 0
    stored_prompt_restored_tokens: int = 0
    stored_prompt_evictions: int = 0


class Runner(Protocol):
    """What the loop needs of a runner (engine.model_runner.ModelRunner; fakes in tests)."""

    n_slots: int
    batch_size: int
    ctx_per_seq: int

    def warm_up(self) -> None: ...

    def decode_times(self) -> DecodeTimes: ...

    def run(self, plan: BatchPlan) -> StepResult: ...

    def release(self, seq_id: int) -> None: ...

    def save(self, slot_id: int, tokens: list[int], salt: str = "") -> None: ...


class Drafter(Protocol):
    """A draft model's guesses (engine.draft_model.DraftModel; fakes in tests)."""

    def draft(self, slot: int, tokens: list[int], want: int) -> list[int]: ...

    def forget(self, slot: int) -> None: ...

    def relative_cost(self) -> float: ...


class Vocab(Protocol):
    """What turning tokens into outputs needs of the model."""

    def is_eog(self, token: int) -> bool: ...

    def token_bytes(self, token: int, special: bool = False) -> bytes: ...


@dataclass(frozen=True)
class EngineConfig:
    max_waiting: int = 64
    prefill_budget: int | None = None  # prompt rows per step while streams decode
    draft_max: int = 0  # longest draft a sequence verifies in one step; 0: no speculation
    # Draft from prompt lookup, not only from a request's prediction; None: where a drafted
    # row measures cheaper than NGRAM_ROW_COST of a step at warm-up.
    ngram: bool | None = True
    # No drafting while more sequences than this decode; None: as measured decode times say.
    draft_streams: int | None = None
    # Draft from the draft model even where its guesses measure too dear to pay.
    force_draft_model: bool = False


class LLMEngine:
    def __init__(self, runner: Runner, vocab: Vocab, config: EngineConfig,
                 store: PromptStore | None = None, drafter: Drafter | None = None) -> None:
        self.runner = runner
        self.drafter = drafter  # a draft model, drafting for every greedy sequence
        self.vocab = vocab
        self.config = config
        self.store = store
        self.scheduler = Scheduler(runner.n_slots, runner.batch_size, config.max_waiting,
                                   config.prefill_budget, config.draft_max, store,
                                   config.draft_streams)
        self.stats = EngineStats()
        self._cond = threading.Condition()
        self._aborts: set[int] = set()
        self._texts: dict[int, IncrementalText] = {}  # per running sequence
        self._stopping = False
        self._failed: str | None = None  # why the loop ended by an exception
        self._warmed_up = threading.Event()
        self._warm_up_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self.min_accept_rate = MIN_ACCEPT_RATE  # measured at warm-up when speculating
        self.model_min_accept = MIN_ACCEPT_RATE  # the same for draft-model guesses
        self.ngram = config.ngram
        # Called on the engine thread after each step's outputs went to their sinks: a worker
        # process sends them to the API process as one message.
        self.after_step: Callable[[], None] | None = None

    def start(self) -> None:
        """Start the engine thread; return once its warm-up decode worked, or raise its error.

        The warm-up (one real token, forgotten again) runs on the engine thread because every
        llama_decode of a context must: llama.cpp's OpenMP team belongs to the thread that
        calls it, and a second calling thread adds a second team. Once teams outnumber the
        cores, libgomp stops spinning at ggml's per-op barriers and every decode sleeps on
        futexes: measured 95 -> 33 tok/s for one stream on 2 cores.
        """
        # After each llama_decode (which runs without the GIL) this thread needs the GIL back
        # at once to sample; Python's default 5 ms hand-over would stall every step.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread.start()
        self._warmed_up.wait()
        if self._warm_up_error is not None:
            self._thread.join()
            raise self._warm_up_error

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def persist(self) -> None:
        """After `stop`: save every slot's cached prefix to the prompt store, so a spill
        folder has them for the next run of this model."""
        if self.store is None or self.store.spill is None or self._thread.is_alive():
            return
        for slot in self.scheduler.slots:
            if len(slot.cached) >= MIN_SAVE_TOKENS and \
                    not self.store.covers(slot.cached, slot.salt):
                self.runner.save(slot.id, list(slot.cached), slot.salt)

    def snapshot(self) -> EngineStats:
        """A consistent copy of the counters, with live running/waiting counts."""
        with self._cond:
            slots = self.scheduler.slots
            used = sum(s.seq.n_computed if s.seq is not None else len(s.cached) for s in slots)
            stats = replace(self.stats, running=len(self.scheduler.running),
                            waiting=len(self.scheduler.waiting), kv_used_tokens=used,
                            kv_capacity_tokens=len(slots) * self.runner.ctx_per_seq)
            if self.store is not None:
                stored = self.store.stats
                stats = replace(stats, stored_prompts=len(self.store),
                                stored_prompt_bytes=self.store.bytes,
                                stored_prompt_saves=stored.saves,
                                stored_prompt_hits=stored.hits,
                                stored_prompt_restored_tokens=stored.restored_tokens,
                                stored_prompt_evictions=stored.evictions)
            return stats

    # -- called from other threads -------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        """Queue a sequence; raises QueueFull when the waiting queue is at capacity."""
        with self._cond:
            if self._failed is not None:
                raise WorkerDied(self._failed)
            if self._stopping:
                raise RuntimeError("engine is stopped")
            self.scheduler.add(seq)
            self._cond.notify()

    def abort(self, seq_id: int) -> None:
        """Cancel a sequence; its slot is freed at the start of the next step."""
        with self._cond:
            self._aborts.add(seq_id)
            self._cond.notify()

    # -- engine thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.runner.warm_up()
            if self.config.draft_max:
                # A draft pays when accepted more often than its rows cost, relative to the
                # step they join; with a margin, since rejected rows also hold it back.
                times = self.runner.decode_times()
                cost = row_cost(times)
                self.scheduler.use_decode_times(times)
                needs = self.scheduler.draft_needs
                assert needs is not None
                self.min_accept_rate = needs[1] or MIN_ACCEPT_RATE  # (never None at 1)
                if self.ngram is None:
                    self.ngram = cost < NGRAM_ROW_COST
                logger.info("a drafted row costs %.2f of a one-row step; drafts must be "
                            "accepted %s of the time at 1..%d streams; prompt lookup %s",
                            cost, "/".join("-" if a is None else f"{a:.0%}"
                                           for a in needs[1:]),
                            len(needs) - 1, "on" if self.ngram else "off")
                if self.drafter is not None:
                    self._plan_draft_model(cost)
        except Exception as exc:
            self._warm_up_error = exc
            return
        finally:
            self._warmed_up.set()
        try:
            self._loop()
        except BaseException as exc:
            # A bug or a native error the runner did not contain: every sequence ends with a
            # 503 now (not a stream that hangs, nor a queue that stays full), then the thread
            # ends with the exception; in a worker process that ends the worker, which the
            # registry restarts.
            self._failed = f"the engine loop failed: {type(exc).__name__}: {exc}"
            self._fail_all(self._failed, UNAVAILABLE)
            if self.after_step is not None:
                self.after_step()
            raise
        # Stopped with sequences still running (an unload past its grace, a shutdown): they
        # end as the model's unavailability (503), as for a worker that was stopped.
        self._fail_all("the model was stopped", UNAVAILABLE)
        if self.after_step is not None:
            self.after_step()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._aborts and not self.scheduler.has_work():
                    self._cond.wait()
                if self._stopping:
                    return
                self._apply_aborts()
                plan = self.scheduler.schedule()
                self._start_new()
            if len(plan) or plan.images:
                self._step(plan)
            if self.after_step is not None:
                self.after_step()

    def _apply_aborts(self) -> None:
        for seq in [*self.scheduler.waiting, *self.scheduler.running]:
            if seq.id in self._aborts:
                self.stats.cancelled += 1
                self._finish(seq, "cancelled")
        self._aborts.clear()

    def _start_new(self) -> None:
        for seq in self.scheduler.running:
            if seq.id not in self._texts:
                seq.admitted_at = time.perf_counter()
                self._texts[seq.id] = IncrementalText(seq.params.stop)
                self.stats.prompt_tokens += len(seq.prompt)
                self.stats.reused_prompt_tokens += seq.cached_tokens
                config, params = self.config, seq.params
                if (config.draft_max and params.plain_greedy and params.grammar is None
                        and (self.ngram or params.prediction or self.drafter is not None)):
                    model = self._model_drafts(seq.slot) if self.drafter else None
                    seq.drafting = start_drafting(
                        seq.prompt, params.prediction, bool(self.ngram),
                        self.model_min_accept if model else self.min_accept_rate, model=model)

    def _plan_draft_model(self, row_cost: float) -> None:
        """A draft model's guess costs a draft decode and a verified row, and saves a step
        when accepted: drafting pays only above their sum. Where it cannot (a draft nearly as
        big as the model, a CPU where rows cost much), the draft model stays unused, so plain
        decoding never gets slower."""
        assert self.drafter is not None
        cost = row_cost + self.drafter.relative_cost()
        if acceptance_needed(cost, 1.0) >= MAX_MODEL_ACCEPT \
                and not self.config.force_draft_model:
            logger.warning("draft model unused: a guess costs %.2f of a step, more than "
                           "drafts can save", cost)
            self.drafter = None
            return
        self.model_min_accept = acceptance_needed(cost, MAX_MODEL_ACCEPT)
        logger.info("draft model: a guess costs %.2f of a step; drafts must be accepted "
                    "%.0f%% of the time", cost, 100 * self.model_min_accept)

    def _model_drafts(self, slot: int) -> Callable[[list[int], int], list[int]]:
        """A sequence's draft-model guesses (in `slot`); a draft that fails is none, and the
        slot's draft KV starts over: the served model's output never depends on it."""
        drafter = self.drafter
        assert drafter is not None

        def guess(tokens: list[int], want: int) -> list[int]:
            try:
                return drafter.draft(slot, tokens, want)
            except Exception:
                logger.exception("draft model failed in slot %d", slot)
                drafter.forget(slot)
                return []

        return guess

    def _step(self, plan: BatchPlan) -> None:
        started = time.perf_counter()
        result = self.runner.run(plan)
        with self._cond:
            # Progress first (the KV now holds these rows), then the outputs, which may
            # finish sequences and free their slots.
            self.scheduler.commit(plan, set(result.failed), result.rejected)
            for slot_id, message in result.failed.items():
                seq = self.scheduler.slots[slot_id].seq
                if seq is not None:
                    self._finish(seq, "error", error=message)
            by_seq: dict[int, list[Sampled]] = {}
            for sampled in result.sampled:
                by_seq.setdefault(sampled.seq.id, []).append(sampled)
            for group in by_seq.values():
                self._emit_all(group, plan.drafts.get(group[0].seq.id, []))
        self.stats.steps += result.decodes
        self.stats.decode_seconds += result.decode_seconds
        self.stats.step_seconds += time.perf_counter() - started

    def _emit_all(self, group: list[Sampled], draft: list[int]) -> None:
        """A sequence's tokens of one step (more than one when a draft was accepted)."""
        seq = group[0].seq
        if seq.drafting is not None:
            accepted = len(group) - 1
            seq.drafting.record(draft, accepted, [s.token for s in group],
                                self.config.draft_max)
            self.stats.draft_tokens += len(draft)
            self.stats.accepted_draft_tokens += accepted
        for sampled in group:
            if seq.status is SequenceStatus.FINISHED:
                return
            self._emit(sampled)

    def _emit(self, sampled: Sampled) -> None:
        """One sampled token becomes the sequence's next output (call with the lock held)."""
        seq, token = sampled.seq, sampled.token
        text = self._texts[seq.id]
        seq.status = SequenceStatus.DECODING
        seq.output.append(token)
        self.stats.completion_tokens += 1
        out = StepOutput(token_ids=[token], prompt_tokens=len(seq.prompt),
                         completion_tokens=len(seq.output), cached_tokens=seq.cached_tokens)
        if sampled.logprob is not None:
            out.logprobs.append(sampled.logprob)
        if len(seq.output) == 1 and seq.admitted_at is not None:
            out.queue_seconds = max(seq.admitted_at - seq.submitted_at, 0.0)
        if self.vocab.is_eog(token):
            out.text = text.flush()
            out.stop_sequence = text.matched  # a stop string held back until the end
            return self._finish(seq, "stop", out)
        out.text = text.push(self.vocab.token_bytes(token))
        if text.stopped:
            out.stop_sequence = text.matched
            return self._finish(seq, "stop", out)
        if sampled.grammar_done:  # only the end of generation could follow
            out.text += text.flush()
            return self._finish(seq, "stop", out)
        if len(seq.output) >= seq.params.max_tokens:
            out.text += text.flush()
            out.stop_sequence = text.matched
            return self._finish(seq, "stop" if text.stopped else "length", out)
        seq.sink(out)

    def _finish(self, seq: Sequence, reason: str, out: StepOutput | None = None,
                error: str | None = None, code: str | None = None) -> None:
        """Release the sequence's slot and tell its consumer (call with the lock held)."""
        if seq.status is SequenceStatus.FINISHED:
            return
        self.scheduler.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        self._texts.pop(seq.id, None)
        self.runner.release(seq.id)
        out = out or StepOutput(prompt_tokens=len(seq.prompt), completion_tokens=len(seq.output),
                                cached_tokens=seq.cached_tokens)
        out.finish_reason = reason
        if seq.params.prediction:
            taken = seq.drafting.accepted_prediction if seq.drafting is not None else 0
            out.accepted_prediction_tokens = min(taken, len(seq.output))
            out.rejected_prediction_tokens = len(seq.params.prediction) - taken
        out.error = error
        out.error_code = code
        seq.sink(out)

    def _fail_all(self, message: str, code: str | None = None) -> None:
        with self._cond:
            for seq in [*self.scheduler.waiting, *self.scheduler.running]:
                self._finish(seq, "error", error=message, code=code)
