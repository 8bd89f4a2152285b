"""The CPU plan for chat + embeddings on 1, 2, 4 and 16 cores under both policies, explicit
thread counts, and how shares are apportioned."""

from __future__ import annotations

import pytest

from modelserve.cpu_cores import CpuBudget
from modelserve.cpu_plan import ModelDemand, apportion, plan

CHAT = ModelDemand("chat", weight=2.0)
EMBED = ModelDemand("embed", weight=1.0)


def cores(n: int, quota: float | None = None) -> CpuBudget:
    effective = n if quota is None else min(n, -(-quota // 1))
    return CpuBudget(tuple(range(n)), quota, int(effective),
                     "affinity" if quota is None else "cgroup quota")


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_shared_runs_one_thread_per_core_in_effect_on_every_core(n: int) -> None:
    p = plan(cores(n), [CHAT, EMBED], "shared")
    assert p.in_effect == "shared" and p.note is None
    assert {name: (a.threads, a.cpus) for name, a in p.models.items()} == \
        {"chat": (n, None), "embed": (n, None)}


def test_shared_caps_threads_at_a_cgroup_quota() -> None:
    p = plan(cores(16, quota=1.5), [CHAT, EMBED], "shared")
    assert [a.threads for a in p.models.values()] == [2, 2]


@pytest.mark.parametrize("n", [1, 2])
def test_partitioned_falls_back_to_shared_on_two_cores_or_fewer(n: int) -> None:
    p = plan(cores(n), [CHAT, EMBED], "partitioned")
    assert (p.policy, p.in_effect) == ("partitioned", "shared")
    assert p.note == f"{n} cores are too few to partition"
    assert [(a.threads, a.cpus) for a in p.models.values()] == [(n, None), (n, None)]
    assert "too few" in p.summary()


def test_partitioned_on_four_cores() -> None:
    p = plan(cores(4), [CHAT, EMBED], "partitioned", api_reserve_cores=1)
    assert p.in_effect == "partitioned" and p.api_cpus == (0,)
    assert {name: (a.threads, a.cpus) for name, a in p.models.items()} == \
        {"chat": (2, (1, 2)), "embed": (1, (3,))}
    assert p.summary().endswith("api on 0; chat: 2 threads on 1-2, embed: 1 thread on 3")


def test_partitioned_on_sixteen_cores() -> None:
    p = plan(cores(16), [CHAT, EMBED], "partitioned", api_reserve_cores=2)
    assert p.api_cpus == (0, 1)
    assert {name: (a.threads, a.cpus) for name, a in p.models.items()} == \
        {"chat": (9, tuple(range(2, 11))), "embed": (5, tuple(range(11, 16)))}


def test_partitioned_uses_only_the_quotas_worth_of_cores() -> None:
    p = plan(cores(16, quota=4.0), [CHAT, EMBED], "partitioned")
    assert {name: a.cpus for name, a in p.models.items()} == {"chat": (1, 2), "embed": (3,)}


def test_partitioned_with_more_models_than_worker_cores_shares() -> None:
    models = [CHAT, EMBED, ModelDemand("rerank"), ModelDemand("tts")]
    p = plan(cores(4), models, "partitioned")
    assert p.in_effect == "shared" and p.note == "3 cores beside the API's for 4 models"


def test_partitioned_with_one_model_gives_it_every_worker_core() -> None:
    p = plan(cores(4), [EMBED], "partitioned")
    assert (p.models["embed"].threads, p.models["embed"].cpus) == (3, (1, 2, 3))


@pytest.mark.parametrize("policy", ["shared", "partitioned"])
@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_an_explicit_thread_count_always_wins(policy: str, n: int) -> None:
    chat = ModelDemand("chat", weight=2.0, threads=6)
    p = plan(cores(n), [chat, EMBED], policy)  # type: ignore[arg-type]
    assert p.models["chat"].threads == 6 and p.models["chat"].explicit
    assert not p.models["embed"].explicit


def test_partitioned_an_explicit_count_asks_for_that_many_cores() -> None:
    chat = ModelDemand("chat", weight=2.0, threads=3)
    p = plan(cores(16), [EMBED, chat], "partitioned")
    assert {name: (a.threads, a.cpus) for name, a in p.models.items()} == \
        {"embed": (12, tuple(range(1, 13))), "chat": (3, (13, 14, 15))}
    # ... but never so many that another model gets none
    greedy = ModelDemand("chat", weight=2.0, threads=64)
    p = plan(cores(4), [greedy, EMBED], "partitioned")
    assert {name: (a.threads, a.cpus) for name, a in p.models.items()} == \
        {"chat": (64, (1, 2)), "embed": (1, (3,))}


def test_a_runtime_without_a_thread_count_gets_none() -> None:
    p = plan(cores(4), [ModelDemand("tiny", has_threads=False)], "shared")
    assert p.models["tiny"].threads is None


def test_no_models() -> None:
    p = plan(cores(4), [], "partitioned")
    assert p.in_effect == "partitioned" and p.models == {}
    assert p.summary().endswith("no models loaded")
    assert p.describe(1)["api_cpus"] == [0]


@pytest.mark.parametrize(("total", "weights", "shares"), [
    (3, [2, 1], [2, 1]),
    (15, [2, 1], [10, 5]),
    (2, [2, 1], [1, 1]),
    (5, [1, 1, 1], [2, 2, 1]),
    (3, [10, 1, 1], [1, 1, 1]),  # each keeps at least one
    (0, [], []),
])
def test_apportion(total: int, weights: list[float], shares: list[int]) -> None:
    assert apportion(total, weights) == shares


@pytest.mark.parametrize(("n", "threads"), [(2, [1, 1]), (4, [3, 1]), (16, [11, 5])])
def test_shared_splits_the_cores_between_models_busy_at_once(n: int,
                                                              threads: list[int]) -> None:
    busy = plan(cores(n), [CHAT, EMBED], "shared", active=frozenset({"chat", "embed"}))
    assert [a.threads for a in busy.models.values()] == threads
    assert all(a.cpus is None for a in busy.models.values())  # shared: never pinned


def test_shared_a_model_busy_alone_keeps_every_core() -> None:
    alone = plan(cores(2), [CHAT, EMBED], "shared", active=frozenset({"chat"}))
    assert [a.threads for a in alone.models.values()] == [2, 2]


def test_shared_an_explicit_count_is_not_split() -> None:
    fixed = ModelDemand("embed", threads=2)
    busy = plan(cores(2), [CHAT, fixed], "shared", active=frozenset({"chat", "embed"}))
    assert [a.threads for a in busy.models.values()] == [2, 2]


def test_partitioned_ignores_what_is_busy() -> None:
    quiet = plan(cores(4), [CHAT, EMBED], "partitioned")
    busy = plan(cores(4), [CHAT, EMBED], "partitioned", active=frozenset({"chat", "embed"}))
    assert quiet.models == busy.models
