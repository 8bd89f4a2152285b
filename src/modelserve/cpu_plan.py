"""The CPU plan: how many threads each loaded model's worker runs, and on which cores, from
the server's CPU budget (cpu_cores.py) and what is loaded. Pure logic: the lifecycle applies
it (cpu_apply.py).

Two policies (the `cpu:` settings section):
- `shared` (the default): every worker may run on every allowed core, as before, but a model
  whose `threads` option is unset runs as many threads as the server has cores *in effect*
  (a cgroup quota of 1.5 cores on a 16-core host: 2, not 16; N threads spinning on fewer
  cores' worth of time stall each other).
- `partitioned`: `api_reserve_cores` cores are kept free of workers for the API process
  (parsing, tokenizing, streaming), and the rest are divided between the loaded models by
  their kinds' `cpu_weight` (chat weighs more: a decoding model uses every core it has);
  each worker is pinned to its share and runs one thread per core of it. With 2 cores or
  fewer, or fewer worker cores than models, partitioning cannot work: the plan is `shared`
  then, and says why.

Under `shared`, models busy at the same moment (requests in flight, `active`) split the cores
between them by weight instead of each running a thread per core: two workers each running
as many threads as there are cores stall each other (llama.cpp's threads wait for one another
at every operation of a step, and one descheduled thread holds them all). A model busy alone
gets every core again; the lifecycle re-plans as models become busy and idle.

A model's explicit `threads:` option always wins over the plan's count; under `partitioned`
it also asks for that many cores of the share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modelserve.cpu_cores import CpuBudget

Policy = Literal["shared", "partitioned"]


@dataclass(frozen=True)
class ModelDemand:
    """One loaded (or loading) model, as the plan sees it."""

    name: str
    weight: float = 1.0  # its kind's cpu_weight: its share of the cores under `partitioned`
    threads: int | None = None  # its explicit `threads` option; None: the plan decides
    has_threads: bool = True  # its runtime has a thread count at all


@dataclass(frozen=True)
class Assignment:
    threads: int | None  # None: its runtime has no thread count
    explicit: bool  # the count is the model's own `threads` option
    cpus: tuple[int, ...] | None  # its affinity; None: every core the server may use

    def describe(self) -> dict[str, Any]:
        return {"threads": self.threads,
                "threads_from": "option" if self.explicit else "plan",
                "affinity": None if self.cpus is None else list(self.cpus)}


@dataclass(frozen=True)
class CpuPlan:
    budget: CpuBudget
    policy: Policy  # what was asked for
    in_effect: Policy  # what runs (`shared` when partitioning cannot work)
    api_cpus: tuple[int, ...]  # cores kept free of workers (partitioned)
    models: dict[str, Assignment] = field(default_factory=dict)
    note: str | None = None  # why the policy in effect is not the one asked for

    def describe(self, api_reserve_cores: int) -> dict[str, Any]:
        return {**self.budget.describe(), "policy": self.policy,
                "policy_in_effect": self.in_effect, "api_reserve_cores": api_reserve_cores,
                "api_cpus": list(self.api_cpus) if self.in_effect == "partitioned" else None,
                "note": self.note}

    def summary(self) -> str:
        """One log line."""
        quota = "" if self.budget.quota_cores is None \
            else f", cgroup quota {self.budget.quota_cores:g}"
        head = (f"cpu plan: {self.budget.effective} cores ({self.budget.detected_by}{quota}), "
                f"{self.in_effect}")
        if self.note:
            head += f" ({self.note})"
        if self.in_effect == "partitioned":
            head += f", api on {_ranges(self.api_cpus)}"
        parts = [f"{name}: {_threads_text(a.threads)}"
                 + (f" on {_ranges(a.cpus)}" if a.cpus is not None else "")
                 for name, a in self.models.items()]
        return head + ("; " + ", ".join(parts) if parts else "; no models loaded")


def plan(budget: CpuBudget, models: Sequence[ModelDemand], policy: Policy = "shared",
         api_reserve_cores: int = 1, active: frozenset[str] = frozenset()) -> CpuPlan:
    """`active`: the models busy now (`shared` splits the cores between them)."""
    if policy == "partitioned":
        worker_cpus = budget.cpus[:budget.effective][api_reserve_cores:]
        why_not = _why_not_partitioned(budget, len(worker_cpus), len(models))
        if why_not is None:
            return _partitioned(budget, models, api_reserve_cores, worker_cpus)
        return _shared(budget, models, policy, why_not, active)
    return _shared(budget, models, policy, None, active)


def _why_not_partitioned(budget: CpuBudget, worker_cores: int, models: int) -> str | None:
    if budget.effective <= 2:
        return f"{budget.effective} cores are too few to partition"
    if worker_cores < max(models, 1):
        return f"{worker_cores} cores beside the API's for {models} models"
    return None


def _shared(budget: CpuBudget, models: Sequence[ModelDemand], policy: Policy,
            note: str | None, active: frozenset[str]) -> CpuPlan:
    busy = [m for m in models if m.name in active and m.has_threads and m.threads is None]
    cores = {m.name: budget.effective for m in models}
    if len(busy) > 1:
        cores.update(zip([m.name for m in busy],
                         (max(1, n) for n in apportion(budget.effective,
                                                       [m.weight for m in busy])),
                         strict=True))
    return CpuPlan(budget, policy, "shared", (), {
        m.name: Assignment(_threads(m, cores[m.name]), m.threads is not None, None)
        for m in models}, note)


def _partitioned(budget: CpuBudget, models: Sequence[ModelDemand], reserve: int,
                 worker_cpus: tuple[int, ...]) -> CpuPlan:
    shares = _shares(len(worker_cpus), models)
    assignments, start = {}, 0
    for model, share in zip(models, shares, strict=True):
        cpus = worker_cpus[start:start + share]
        start += share
        assignments[model.name] = Assignment(_threads(model, share), model.threads is not None,
                                             cpus)
    return CpuPlan(budget, "partitioned", "partitioned", budget.cpus[:reserve], assignments)


def _threads(model: ModelDemand, cores: int) -> int | None:
    if not model.has_threads:
        return None
    return model.threads if model.threads is not None else cores


def _shares(total: int, models: Sequence[ModelDemand]) -> list[int]:
    """Cores per model, each at least 1, summing to at most `total` (>= len(models)): an
    explicit thread count asks for that many (leaving 1 to each other model), the rest is
    apportioned by weight among the others."""
    shares = [0] * len(models)
    left = total
    flexible = [i for i, m in enumerate(models) if m.threads is None]
    waiting = len(models)  # models without a share yet: each keeps at least a core
    for i, model in enumerate(models):
        if model.threads is not None:
            waiting -= 1
            shares[i] = max(1, min(model.threads, left - waiting))
            left -= shares[i]
    for i, share in zip(flexible, apportion(left, [models[i].weight for i in flexible]),
                        strict=True):
        shares[i] = share
    return shares


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """`total` whole cores split by `weights` (largest remainders), each at least 1 when
    there are enough; [] for no weights."""
    if not weights:
        return []
    whole = sum(weights)
    ideal = [total * w / whole for w in weights]
    shares = [max(1, math.floor(x)) for x in ideal]
    while sum(shares) > total and any(s > 1 for s in shares):
        i = max((i for i, s in enumerate(shares) if s > 1), key=lambda i: shares[i] - ideal[i])
        shares[i] -= 1
    while sum(shares) < total:
        i = max(range(len(shares)), key=lambda i: ideal[i] - shares[i])
        shares[i] += 1
    return shares


def _threads_text(threads: int | None) -> str:
    if threads is None:
        return "no thread count"
    return f"{threads} thread{'' if threads == 1 else 's'}"


def _ranges(cpus: Sequence[int]) -> str:
    """CPU ids as taskset writes them: 0-3,6."""
    out: list[str] = []
    for cpu in cpus:
        if out and cpu == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{cpu}"
        else:
            out.append(str(cpu))
    return ",".join(out) or "-"
