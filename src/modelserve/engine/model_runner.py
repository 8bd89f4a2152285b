"""The model runner: executes one planned step on llama.cpp (nano-vllm's `model_runner`).

It owns the context and the per-sequence samplers. `run(plan)` saves slots to the prompt store
and restores entries from it, drops the KV cells the plan trims, decodes the token batch in
ONE llama_decode, samples every row that wants logits (a speculating sequence's drafted rows
in order, up to the first the model disagrees with, whose KV it drops again), then evaluates
the plan's image slices (embeddings cannot share a batch with tokens). It reports what it
sampled and which slots failed; it records no progress itself (the scheduler commits after
the step) and knows nothing of outputs, text or finishing.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from modelserve.engine.constraints import Constraints, GrammarError
from modelserve.engine.prompt_store import PromptStore
from modelserve.engine.scheduler import BatchPlan, ImageSlice
from modelserve.engine.sequence import Sequence, TokenLogprob
from modelserve.engine.speculation import DecodeTimes
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel, Sampler, SamplerConfig

logger = logging.getLogger(__name__)
# Batch sizes timed at warm-up when speculating, until about a second has gone on it (all of
# them: SmolLM2 on 2 cores 0.35-0.5 s, Qwen2.5-Coder-0.5B 0.7-0.8 s; a big model stops after
# the first two). Past 32 rows a CPU's cost is linear, and speculation.step_time extrapolates
# along the last segment, so a table cut short at 16 rows misjudges bigger steps.
DECODE_TIME_ROWS = (1, 2, 4, 8, 16, 32)
DECODE_TIME_BUDGET_S = 1.0


@dataclass
class Sampled:
    seq: Sequence
    token: int
    logprob: TokenLogprob | None = None
    grammar_done: bool = False  # its grammar is complete: the sequence ends with this token


@dataclass
class StepResult:
    sampled: list[Sampled] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # slot id -> why its step failed
    rejected: dict[int, int] = field(default_factory=dict)  # slot id -> drafted rows dropped
    decodes: int = 0  # llama_decode calls that succeeded
    decode_seconds: float = 0.0


class ModelRunner:
    def __init__(self, model: LlamaModel, ctx: LlamaContext,
                 store: PromptStore | None = None) -> None:
        self.model = model
        self.ctx = ctx
        self.store = store
        # End-of-generation tokens, masked out while `ignore_eos` or `min_tokens` hold them off;
        # found on first use (a scan of the vocabulary, not worth doing at every load).
        self._eog: npt.NDArray[np.int64] | None = None
        self.n_slots = ctx.n_seq
        self.batch_size = ctx.batch_size
        self.ctx_per_seq = ctx.ctx_per_seq
        # None: plain greedy, an argmax over the logits, no llama.cpp chain to build per step.
        self._samplers: dict[int, Sampler | None] = {}
        self._constraints = Constraints(model.vocab_handle, model.n_vocab)

    def warm_up(self) -> None:
        self.ctx.warm_up()

    def decode_times(self) -> DecodeTimes:
        """Seconds of one decode of 1, 2, 4 ... 32 rows (up to the batch size), measured on
        this machine at warm-up: what speculation weighs drafted rows against
        (speculation.acceptance_at_load). Small batches are the best of two (a few ms each,
        the noisiest); the first two sizes are always timed."""
        times: DecodeTimes = {}
        spent = 0.0
        for rows in DECODE_TIME_ROWS:
            if rows > max(1, self.batch_size) or (len(times) >= 2
                                                   and spent > DECODE_TIME_BUDGET_S):
                break
            repeats = 2 if rows <= 8 else 1
            times[rows] = self.ctx.time_decode(rows, repeats)
            spent += times[rows] * repeats
        return times

    def run(self, plan: BatchPlan) -> StepResult:
        result = StepResult()
        for slot_id, tokens, salt in plan.saves:
            self.save(slot_id, tokens, salt)
        for slot_id, entry in plan.restores:
            try:
                self.ctx.load_state(slot_id, entry.state)
            except Exception as exc:
                logger.exception("restoring a saved prompt failed")
                result.failed[slot_id] = str(exc)
        for src, dst in plan.copies:
            self.ctx.copy_slot(src, dst)
        for slot_id, from_pos in plan.trims:
            self.ctx.forget(slot_id, from_pos)
        if len(plan):
            self._eval_tokens(plan, result)
        for piece in plan.images:
            if piece.seq.slot not in result.failed:
                self._eval_image(piece, result)
        for slot_id in result.failed:
            self.ctx.forget(slot_id)  # what this step left in the slot's KV is unknown
        return result

    def release(self, seq_id: int) -> None:
        """The sequence finished: free its sampler chain."""
        sampler = self._samplers.pop(seq_id, None)
        if sampler is not None:
            sampler.close()
        self._constraints.release(seq_id)

    def _eval_tokens(self, plan: BatchPlan, result: StepResult) -> None:
        started = time.perf_counter()
        try:
            self.ctx.decode(plan.tokens, plan.positions, plan.seq_ids, plan.want_logits)
        except Exception as exc:  # a decode failure poisons this batch, not the server
            logger.exception("decode failed")
            result.failed.update(dict.fromkeys(plan.seq_ids, str(exc)))
            return
        result.decodes += 1
        result.decode_seconds += time.perf_counter() - started
        # Sample before any image decode: the next llama_decode overwrites the logits.
        for seq, row in plan.sample:
            if seq.slot in result.failed:
                continue
            try:
                draft = plan.drafts.get(seq.id)
                if draft:
                    self._verify(seq, row, draft, plan, result)
                else:
                    result.sampled.append(self._sample(seq, row))
            except GrammarError as exc:
                result.failed[seq.slot] = f"the output left its grammar: {exc}"

    def _verify(self, seq: Sequence, row: int, draft: list[int], plan: BatchPlan,
                result: StepResult) -> None:
        """Sample the sequence's row, then each drafted row while the draft agrees with
        what was sampled: the tokens are the ones decoding one by one would have made. The
        KV of the drafted rows after the first disagreement is dropped again."""
        accepted = 0
        for i in range(len(draft) + 1):
            sampled = self._sample(seq, row + i, produced=i)
            result.sampled.append(sampled)
            if i == len(draft) or sampled.token != draft[i]:
                break
            accepted += 1
        if accepted < len(draft):
            self.ctx.forget(seq.slot, plan.positions[row + accepted + 1])
            result.rejected[seq.slot] = len(draft) - accepted

    def save(self, slot_id: int, tokens: list[int], salt: str = "") -> None:
        """Copy the slot's KV (holding `tokens`, in scope `salt`) into the prompt store."""
        assert self.store is not None
        try:
            self.store.put(tokens, self.ctx.save_state(slot_id), salt)
        except Exception:  # the cache is an optimisation: a failed save costs a prefill
            logger.exception("saving slot %d to the prompt store failed", slot_id)

    def _eval_image(self, piece: ImageSlice, result: StepResult) -> None:
        started = time.perf_counter()
        end = piece.offset + piece.count
        assert piece.span.embd is not None  # attached when the sequence started
        try:
            self.ctx.decode_embeddings(piece.span.embd[piece.offset:end],
                                       piece.span.pos[:, piece.offset:end], piece.seq.slot,
                                       non_causal=piece.span.non_causal)
        except Exception as exc:
            logger.exception("image decode failed")
            result.failed[piece.seq.slot] = str(exc)
            return
        result.decodes += 1
        result.decode_seconds += time.perf_counter() - started

    def _sample(self, seq: Sequence, row: int, produced: int = 0) -> Sampled:
        """Sample one row; `produced`: tokens sampled for the sequence earlier in this step."""
        if seq.id not in self._samplers:
            self._samplers[seq.id] = self._make_sampler(seq)
        sampler = self._samplers[seq.id]
        params = seq.params
        if params.ignore_eos or len(seq.output) + produced < params.min_tokens:
            if self._eog is None:
                self._eog = np.array([t for t in range(self.model.n_vocab)
                                      if self.model.is_eog(t)], dtype=np.int64)
            self.ctx.logits(row)[self._eog] = -np.inf
        grammar = seq.params.grammar
        if grammar is not None:  # before any sampling, the greedy argmax included
            self._constraints.mask(seq.id, grammar, self.ctx.logits(row))
        if sampler is None:
            # The same choice as llama.cpp's greedy sampler (first maximum), without building
            # its candidate array over the whole vocabulary for every sequence every step.
            token = int(np.argmax(self.ctx.logits(row)))
        else:
            token = sampler.sample(self.ctx, row)
        logprob = (self._logprob(row, token, seq.params.top_logprobs) if seq.params.logprobs
                   else None)
        done = grammar is not None and self._constraints.advance(seq.id, token)
        return Sampled(seq, token, logprob, done)

    def _make_sampler(self, seq: Sequence) -> Sampler | None:
        p = seq.params
        if p.plain_greedy:
            return None
        seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "little")
        return Sampler(self.model, SamplerConfig(
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, min_p=p.min_p, seed=seed,
            presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            repeat_penalty=p.repeat_penalty, penalty_last_n=max(p.max_tokens, 64),
            logit_bias=p.logit_bias))

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
