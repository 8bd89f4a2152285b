"""The engine loop: one thread per chat model, ONE llama_decode per step for all sequences."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from modelserve.engine.detokenizer import IncrementalText
from modelserve.engine.scheduler import BatchPlan, ImageSlice, Scheduler
from modelserve.engine.sequence import (
    Sequence,
    SequenceStatus,
    StepOutput,
    TokenLogprob,
)
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel, Sampler, SamplerConfig

logger = logging.getLogger(__name__)


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


@dataclass
class _Live:
    """Per-sequence state that lives only while the sequence runs."""

    sampler: Sampler | None  # None: plain greedy, an argmax over the logits
    text: IncrementalText


class LLMEngine:
    def __init__(self, model: LlamaModel, ctx: LlamaContext, max_waiting: int) -> None:
        self.model = model
        self.ctx = ctx
        self.scheduler = Scheduler(ctx.n_seq, ctx.batch_size, max_waiting)
        self.stats = EngineStats()
        self._cond = threading.Condition()
        self._inbox: list[Sequence] = []
        self._aborts: set[int] = set()
        self._live: dict[int, _Live] = {}
        self._stopping = False
        self._warmed_up = threading.Event()
        self._warm_up_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)

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

    def snapshot(self) -> EngineStats:
        """A consistent copy of the counters, with live running/waiting counts."""
        with self._cond:
            slots = self.scheduler.slots
            used = sum(s.seq.n_computed if s.seq is not None else len(s.cached) for s in slots)
            return replace(self.stats, running=len(self.scheduler.running),
                           waiting=len(self.scheduler.waiting), kv_used_tokens=used,
                           kv_capacity_tokens=len(slots) * self.ctx.ctx_per_seq)

    # -- called from other threads -------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        """Queue a sequence; raises QueueFull when the waiting queue is at capacity."""
        with self._cond:
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
            self.ctx.warm_up()
        except Exception as exc:
            self._warm_up_error = exc
            return
        finally:
            self._warmed_up.set()
        while True:
            with self._cond:
                while not self._stopping and not self._aborts and not self.scheduler.has_work():
                    self._cond.wait()
                if self._stopping:
                    break
                self._apply_aborts()
                plan = self.scheduler.schedule()
                self._start_new(plan)
            if len(plan) or plan.images:
                self._step(plan)
        self._fail_all("engine stopped")

    def _apply_aborts(self) -> None:
        for seq in [*self.scheduler.waiting, *self.scheduler.running]:
            if seq.id in self._aborts:
                self.stats.cancelled += 1
                self._finish(seq, "cancelled")
        self._aborts.clear()

    def _start_new(self, plan: BatchPlan) -> None:
        for slot_id, from_pos in plan.trims:
            self.ctx.forget(slot_id, from_pos)
        for seq in self.scheduler.running:
            if seq.id not in self._live:
                seq.admitted_at = time.perf_counter()
                text = IncrementalText(seq.params.stop)
                self._live[seq.id] = _Live(self._make_sampler(seq), text)
                self.stats.prompt_tokens += len(seq.prompt)
                self.stats.reused_prompt_tokens += seq.cached_tokens

    def _make_sampler(self, seq: Sequence) -> Sampler | None:
        p = seq.params
        if (p.temperature <= 0 and not p.logit_bias and not p.presence_penalty
                and not p.frequency_penalty and p.repeat_penalty == 1.0):
            return None
        seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "little")
        return Sampler(self.model, SamplerConfig(
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, min_p=p.min_p, seed=seed,
            presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            repeat_penalty=p.repeat_penalty, penalty_last_n=max(p.max_tokens, 64),
            logit_bias=p.logit_bias))

    def _step(self, plan: BatchPlan) -> None:
        started = time.perf_counter()
        if len(plan):
            self._eval_tokens(plan, started)
        for piece in plan.images:
            self._eval_image(piece)
        self.stats.step_seconds += time.perf_counter() - started

    def _eval_tokens(self, plan: BatchPlan, started: float) -> None:
        try:
            self.ctx.decode(plan.tokens, plan.positions, plan.seq_ids, plan.want_logits)
        except Exception as exc:  # a decode failure poisons this batch, not the server
            logger.exception("decode failed")
            self._fail_slots(set(plan.seq_ids), str(exc))
            return
        self.stats.steps += 1
        self.stats.decode_seconds += time.perf_counter() - started
        # Sample before any image decode: the next llama_decode overwrites the logits.
        with self._cond:
            for seq, row in plan.sample:
                if seq.status is not SequenceStatus.FINISHED:
                    self._sample(seq, row)

    def _eval_image(self, piece: ImageSlice) -> None:
        """One image slice, in its own decode: embeddings cannot share a batch with tokens."""
        started = time.perf_counter()
        end = piece.offset + piece.count
        try:
            self.ctx.decode_embeddings(piece.span.embd[piece.offset:end],
                                       piece.span.pos[:, piece.offset:end], piece.seq.slot,
                                       non_causal=piece.span.non_causal)
        except Exception as exc:
            logger.exception("image decode failed")
            self._fail_slots({piece.seq.slot}, str(exc))
            return
        self.stats.steps += 1
        self.stats.decode_seconds += time.perf_counter() - started

    def _fail_slots(self, slot_ids: set[int], message: str) -> None:
        with self._cond:
            for slot_id in slot_ids:
                slot = self.scheduler.slots[slot_id]
                if slot.seq is not None:
                    self._finish(slot.seq, "error", error=message)
                slot.cached.clear()  # the KV of this batch is unknown: never reuse it
                self.ctx.forget(slot_id)

    def _sample(self, seq: Sequence, row: int) -> None:
        live = self._live[seq.id]
        if live.sampler is None:
            # The same choice as llama.cpp's greedy sampler (first maximum), without building
            # its candidate array over the whole vocabulary for every sequence every step.
            token = int(np.argmax(self.ctx.logits(row)))
        else:
            token = live.sampler.sample(self.ctx, row)
        seq.status = SequenceStatus.DECODING
        seq.output.append(token)
        self.stats.completion_tokens += 1
        out = StepOutput(token_ids=[token], prompt_tokens=len(seq.prompt),
                         completion_tokens=len(seq.output), cached_tokens=seq.cached_tokens)
        if seq.params.logprobs:
            out.logprobs.append(self._logprob(row, token, seq.params.top_logprobs))
        if self.model.is_eog(token):
            out.text = live.text.flush()
            return self._finish(seq, "stop", out)
        out.text = live.text.push(self.model.token_bytes(token))
        if live.text.stopped:
            return self._finish(seq, "stop", out)
        if len(seq.output) >= seq.params.max_tokens:
            out.text += live.text.flush()
            return self._finish(seq, "stop" if live.text.stopped else "length", out)
        seq.sink(out)

    def _logprob(self, row: int, token: int, top_n: int) -> TokenLogprob:
        logits = self.ctx.logits(row).astype(np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - math.log(float(np.exp(shifted).sum()))
        top: tuple[tuple[int, float], ...] = ()
        if top_n > 0:
            best = np.argpartition(-logprobs, top_n)[:top_n]
            best = best[np.argsort(-logprobs[best])]
            top = tuple((int(t), float(logprobs[t])) for t in best)
        return TokenLogprob(token, float(logprobs[token]), top)

    def _finish(self, seq: Sequence, reason: str, out: StepOutput | None = None,
                error: str | None = None) -> None:
        """Release the sequence's slot and tell its consumer (call with the lock held)."""
        if seq.status is SequenceStatus.FINISHED:
            return
        self.scheduler.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        live = self._live.pop(seq.id, None)
        if live is not None and live.sampler is not None:
            live.sampler.close()
        out = out or StepOutput(prompt_tokens=len(seq.prompt), completion_tokens=len(seq.output),
                                cached_tokens=seq.cached_tokens)
        out.finish_reason = reason
        out.error = error
        seq.sink(out)

    def _fail_all(self, message: str) -> None:
        with self._cond:
            for seq in [*self.scheduler.waiting, *self.scheduler.running]:
                self._finish(seq, "error", error=message)
