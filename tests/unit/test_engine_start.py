"""LLMEngine.start runs the warm-up decode on the engine thread and reports its failure."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from modelserve.engine.llm_engine import LLMEngine


class FakeContext:
    n_seq = 2
    batch_size = 32
    ctx_per_seq = 64

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.warmed_on: threading.Thread | None = None

    def warm_up(self) -> None:
        self.warmed_on = threading.current_thread()
        if self.error is not None:
            raise self.error


def engine(ctx: FakeContext) -> LLMEngine:
    fake: Any = ctx
    return LLMEngine(model=None, ctx=fake, max_waiting=4)  # type: ignore[arg-type]


def test_the_warm_up_runs_on_the_engine_thread() -> None:
    ctx = FakeContext()
    eng = engine(ctx)
    eng.start()
    try:
        assert ctx.warmed_on is not None and ctx.warmed_on.name == "llm-engine"
        assert ctx.warmed_on is not threading.current_thread()
    finally:
        eng.stop()


def test_a_failed_warm_up_is_raised_by_start_and_leaves_no_thread() -> None:
    eng = engine(FakeContext(RuntimeError("llama_decode failed with code -3")))
    with pytest.raises(RuntimeError, match="code -3"):
        eng.start()
    assert not eng._thread.is_alive()
    eng.stop()  # stopping an engine whose start failed is harmless
