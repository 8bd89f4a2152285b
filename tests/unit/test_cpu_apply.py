"""The CPU planner between plans: what a new worker is started with, and running workers
following a re-plan, live or at their next load (fake workers: no process is started)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from modelserve.config import ModelSpec
from modelserve.config_sections import CpuSettings
from modelserve.cpu_apply import CpuPlanner
from modelserve.cpu_cores import CpuBudget
from modelserve.kinds.options import EmbeddingOptions, LlamaCppOptions
from modelserve.worker.transport import Worker

CHAT = ModelSpec(name="chat", source="/models/chat.gguf")
EMBED = ModelSpec(name="embed", kind="embeddings", source="/models/embed")
PINNED_THREADS = ModelSpec(name="embed", kind="embeddings", source="/models/embed",
                           options={"threads": 5})


class FakeWorker:
    """A worker whose runtime takes a new thread count live, or not (ONNX Runtime); no
    process (as an inline one), so nothing to pin."""

    pid = None

    def __init__(self, live: bool) -> None:
        self.live = live
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def acall(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        return self.live


def planner(n: int = 4) -> CpuPlanner:
    return CpuPlanner(CpuSettings(policy="partitioned", api_reserve_cores=1),
                      CpuBudget(tuple(range(n)), None, n, "affinity"))


def test_a_new_worker_gets_its_planned_threads_and_cores() -> None:
    cpu = planner()
    spec, assignment = cpu.prepare(EMBED, [CHAT, EMBED])
    assert spec.options_as(EmbeddingOptions).threads == 1
    assert EMBED.options_as(EmbeddingOptions).threads is None  # the server's spec unchanged
    assert assignment.cpus == (3,)
    spec, assignment = cpu.prepare(CHAT, [CHAT])
    assert (spec.options_as(LlamaCppOptions).threads, assignment.cpus) == (3, (1, 2, 3))


def test_an_explicit_count_reaches_the_worker_unchanged() -> None:
    spec, assignment = planner().prepare(PINNED_THREADS, [CHAT, PINNED_THREADS])
    assert spec is PINNED_THREADS and assignment.explicit and assignment.threads == 5


def test_inline_models_are_never_pinned() -> None:
    _, assignment = planner().prepare(CHAT, [CHAT, EMBED], pin=False)
    assert assignment.cpus is None and assignment.threads == 2


def test_running_workers_follow_a_replan_live_or_at_their_next_load() -> None:
    cpu = planner()
    chat_fake, embed_fake = FakeWorker(live=True), FakeWorker(live=False)
    chat, embed = cast(Worker, chat_fake), cast(Worker, embed_fake)
    cpu.track("chat", chat, cpu.prepare(CHAT, [CHAT], pin=False)[1])  # alone: 3 threads
    cpu.track("embed", embed, cpu.prepare(EMBED, [CHAT, EMBED], pin=False)[1])
    asyncio.run(cpu.replan([(CHAT, chat), (EMBED, embed)]))
    assert chat_fake.calls == [("set_threads", (2,))] and embed_fake.calls == []
    assert cpu.of("chat", chat) == {"threads": 2, "threads_from": "plan", "affinity": None,
                                    "nice": 0}
    asyncio.run(cpu.replan([(EMBED, embed)]))
    assert embed_fake.calls == [("set_threads", (3,))]
    # ONNX Runtime keeps its pool: the new count is its next load's
    assert cpu.of("embed", embed) == {"threads": 1, "threads_from": "plan", "affinity": None,
                                      "nice": 0, "threads_at_next_load": 3}
    assert cpu.of("chat", chat) is None  # unloaded: forgotten
    assert cpu.describe()["policy_in_effect"] == "partitioned"


def test_the_operators_weights_replace_the_kinds_own() -> None:
    budget = CpuBudget(tuple(range(5)), None, 5, "affinity")
    kinds_own = CpuPlanner(CpuSettings(policy="partitioned"), budget)
    assert kinds_own.prepare(EMBED, [CHAT, EMBED])[1].threads == 1  # 4 cores: chat 3 : 1
    even = CpuPlanner(CpuSettings(policy="partitioned", weights={"embeddings": 2}), budget)
    assert even.prepare(EMBED, [CHAT, EMBED])[1].threads == 2  # 2 : 2


def test_weights_name_known_kinds_and_are_positive() -> None:
    for weights, message in (({"chatt": 1}, "unknown model kind 'chatt'"),
                             ({"chat": 0}, "more than 0")):
        with pytest.raises(ValueError, match=message):
            CpuSettings(weights=weights)
    for nice, message in (({"embedding": 5}, "unknown model kind"), ({"embeddings": 20}, "0-19"),
                          ({"embeddings": -1}, "0-19")):
        with pytest.raises(ValueError, match=message):
            CpuSettings(nice=nice)
    assert CpuPlanner(CpuSettings(nice={"embeddings": 5})).nice_of(EMBED) == 5
    assert CpuPlanner(CpuSettings(nice={"embeddings": 5})).nice_of(CHAT) == 0
    # unset: the kind's own (embeddings give way to chat); 0 turns it off
    assert CpuPlanner(CpuSettings()).nice_of(EMBED) == 10
    assert CpuPlanner(CpuSettings()).nice_of(CHAT) == 0
    assert CpuPlanner(CpuSettings(nice={"embeddings": 0})).nice_of(EMBED) == 0
