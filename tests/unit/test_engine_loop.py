"""The engine loop with a fake runner: orchestration, outputs, commits after the step, failures.

The fake runner "decodes" by answering each sampled row with the next token of a script per
sequence, so the loop's own logic (aborts, progress, text, finishing) is tested without
llama.cpp.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

from modelserve.engine.llm_engine import EngineConfig, LLMEngine
from modelserve.engine.model_runner import Sampled, StepResult
from modelserve.engine.scheduler import BatchPlan
from modelserve.engine.sequence import SamplingParams, Sequence, StepOutput

EOG = 0


class FakeVocab:
    def is_eog(self, token: int) -> bool:
        return token == EOG

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        return f"<{token}>".encode()


class FakeRunner:
    n_slots = 2
    batch_size = 16
    ctx_per_seq = 64

    def __init__(self, script: list[int], fail_step: int | None = None,
                 warm_up_error: Exception | None = None) -> None:
        self.script = script  # the tokens every sequence "samples", in order
        self.fail_step = fail_step
        self.warm_up_error = warm_up_error
        self.warmed_on: threading.Thread | None = None
        self.steps = 0
        self.released: list[int] = []
        self.seen_progress: list[int] = []  # n_computed of sampled sequences while running
        self.hold_from: int | None = None  # steps from this one wait for `resume`
        self.resume = threading.Event()

    def warm_up(self) -> None:
        self.warmed_on = threading.current_thread()
        if self.warm_up_error is not None:
            raise self.warm_up_error

    def run(self, plan: BatchPlan) -> StepResult:
        self.steps += 1
        if self.hold_from is not None and self.steps >= self.hold_from:
            self.resume.wait(timeout=5)
        result = StepResult(decodes=1)
        if self.steps == self.fail_step:
            result.failed = dict.fromkeys(plan.seq_ids, "llama_decode failed with code 1")
            return result
        for seq, _row in plan.sample:
            self.seen_progress.append(seq.n_computed)
            result.sampled.append(Sampled(seq, self.script[len(seq.output)]))
        return result

    def release(self, seq_id: int) -> None:
        self.released.append(seq_id)


class Recorded(Sequence):
    """A sequence whose outputs land in a queue the test reads."""

    box: queue.Queue[StepOutput]


def outputs(engine: LLMEngine, seq: Recorded, timeout: float = 5.0) -> Iterator[StepOutput]:
    """Every output of one sequence until it finishes."""
    box = seq.box
    while True:
        out = box.get(timeout=timeout)
        yield out
        if out.finish_reason is not None:
            return


def sequence(prompt: list[int], **params: object) -> Recorded:
    box: queue.Queue[StepOutput] = queue.Queue()
    seq = Recorded(prompt=prompt, params=SamplingParams(**params),  # type: ignore[arg-type]
                   sink=box.put)
    seq.box = box
    return seq


@pytest.fixture
def started() -> Iterator[list[LLMEngine]]:
    engines: list[LLMEngine] = []
    yield engines
    for engine in engines:
        engine.stop()


def run(runner: FakeRunner, started: list[LLMEngine]) -> LLMEngine:
    engine = LLMEngine(runner, FakeVocab(), EngineConfig(max_waiting=4))
    engine.start()
    started.append(engine)
    return engine


def test_tokens_become_text_until_max_tokens(started: list[LLMEngine]) -> None:
    runner = FakeRunner(script=[5, 6, 7, 8])
    engine = run(runner, started)
    seq = sequence([1, 2, 3], max_tokens=3)
    engine.submit(seq)
    outs = list(outputs(engine, seq))
    assert [o.text for o in outs] == ["<5>", "<6>", "<7>"]
    assert outs[-1].finish_reason == "length" and outs[-1].completion_tokens == 3
    assert runner.released == [seq.id]
    # The runner saw each step's progress from before the step: the scheduler committed after.
    assert runner.seen_progress == [0, 3, 4]
    assert engine.snapshot().completion_tokens == 3


def test_end_of_generation_and_stop_strings(started: list[LLMEngine]) -> None:
    engine = run(FakeRunner(script=[5, EOG]), started)
    seq = sequence([1], max_tokens=8)
    engine.submit(seq)
    assert [o.finish_reason for o in outputs(engine, seq)] == [None, "stop"]
    engine2 = run(FakeRunner(script=[5, 6, 7]), started)
    stopped = sequence([1], max_tokens=8, stop=("<6>",))
    engine2.submit(stopped)
    outs = list(outputs(engine2, stopped))
    assert outs[-1].finish_reason == "stop" and "".join(o.text for o in outs) == "<5>"


def test_a_failed_step_fails_its_sequences_and_keeps_no_prefix(started: list[LLMEngine]) -> None:
    runner = FakeRunner(script=[5, 6, 7], fail_step=2)
    engine = run(runner, started)
    seq = sequence([1, 2], max_tokens=3)
    engine.submit(seq)
    outs = list(outputs(engine, seq))
    assert outs[-1].finish_reason == "error" and "code 1" in (outs[-1].error or "")
    slot = engine.scheduler.slots[seq.slot]
    assert slot.cached == [] and slot.seq is None  # the KV of a failed step is never reused
    # The engine keeps serving: the next sequence runs to the end.
    again = sequence([1, 2], max_tokens=2)
    engine.submit(again)
    assert list(outputs(engine, again))[-1].finish_reason == "length"


def test_abort_cancels_at_the_next_step(started: list[LLMEngine]) -> None:
    runner = FakeRunner(script=list(range(10, 60)))
    runner.hold_from = 2  # the second step waits until the abort is in
    engine = run(runner, started)
    seq = sequence([1], max_tokens=50)
    engine.submit(seq)
    first = next(outputs(engine, seq))
    assert first.token_ids == [10]
    engine.abort(seq.id)
    runner.resume.set()
    assert list(outputs(engine, seq))[-1].finish_reason == "cancelled"
    assert engine.snapshot().cancelled == 1


def test_the_warm_up_runs_on_the_engine_thread(started: list[LLMEngine]) -> None:
    runner = FakeRunner(script=[])
    run(runner, started)
    assert runner.warmed_on is not None and runner.warmed_on.name == "llm-engine"


def test_a_failed_warm_up_is_raised_by_start_and_leaves_no_thread() -> None:
    engine = LLMEngine(FakeRunner(script=[], warm_up_error=RuntimeError("code -3")),
                       FakeVocab(), EngineConfig(max_waiting=4))
    with pytest.raises(RuntimeError, match="code -3"):
        engine.start()
    assert not engine._thread.is_alive()
    engine.stop()  # stopping an engine whose start failed is harmless
