"""The CPU plan (cpu_plan.py) applied to the workers, by the lifecycle: a new worker starts
with its planned thread count (as its runtime's `threads` option, when the model sets none)
and affinity; each load and unload re-plans, and the running workers follow:

- affinity from here, on every thread of the worker (/proc/PID/task);
- threads through the worker (the kind's `set_threads`: llama.cpp's and torch's change at
  once; an ONNX Runtime session keeps its pool, so its new count applies at its next load,
  and /admin/models says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from modelserve.config import ModelSpec
from modelserve.config_sections import CpuSettings
from modelserve.cpu_cores import CpuBudget, allowed_cpus
from modelserve.cpu_plan import Assignment, CpuPlan, ModelDemand, plan
from modelserve.kinds import KINDS
from modelserve.kinds.base import ModelKind
from modelserve.worker.transport import Worker

logger = logging.getLogger(__name__)

SET_THREADS_TIMEOUT = 5.0  # seconds a worker gets to take its new count (a quick call)


@dataclass
class _Running:
    """What one worker runs with now."""

    worker: Worker
    threads: int | None
    explicit: bool
    cpus: tuple[int, ...] | None  # None: inherited from the server (every allowed core)
    nice: int = 0


T = TypeVar("T")


def per_kind(settings: Mapping[str, T], spec: ModelSpec, own: Callable[[ModelKind[Any]], T],
             default: T) -> T:
    """The operator's setting for `spec`'s kind (`cpu.weights`, `cpu.nice`), else the kind's
    own value, else `default` (a kind this build does not know)."""
    if spec.kind in settings:
        return settings[spec.kind]
    kind = KINDS.get(spec.kind)
    return own(kind) if kind is not None else default


def demand_of(spec: ModelSpec, weights: dict[str, float] | None = None) -> ModelDemand:
    """`weights`: the operator's share per kind (`cpu.weights`), over the kinds' own."""
    options = spec.options
    weight = per_kind(weights or {}, spec, lambda kind: kind.cpu_weight, 1.0)
    return ModelDemand(spec.name, weight=weight,
                       threads=getattr(options, "threads", None),
                       has_threads="threads" in type(options).model_fields)


def set_process_affinity(pid: int, cpus: Sequence[int]) -> None:
    """Every thread of process `pid` on `cpus` (sched_setaffinity(pid) moves only its main
    thread). A thread started meanwhile copies its starter's, so a second look settles."""
    done: set[int] = set()
    for _ in range(3):
        try:
            tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")} - done
        except FileNotFoundError:
            return  # it has exited
        if not tids:
            return
        for tid in tids:
            with contextlib.suppress(OSError):  # the thread ended meanwhile
                os.sched_setaffinity(tid, cpus)
        done |= tids


class CpuPlanner:
    def __init__(self, settings: CpuSettings | None = None,
                 budget: CpuBudget | None = None) -> None:
        self.settings = settings or CpuSettings()
        self.budget = budget or allowed_cpus(override=self.settings.cores)
        self.active: set[str] = set()  # models with requests in flight (shared: they split)
        self.plan = self._plan([])
        self._running: dict[str, _Running] = {}
        self._lock: asyncio.Lock | None = None

    def _plan(self, specs: Sequence[ModelSpec]) -> CpuPlan:
        names = {s.name for s in specs}
        return plan(self.budget, [demand_of(s, self.settings.weights) for s in specs],
                    self.settings.policy,
                    self.settings.api_reserve_cores, frozenset(self.active & names))

    def set_active(self, name: str, busy: bool) -> bool:
        """`name` became busy or idle; True when that can change the plan (re-plan then)."""
        if busy == (name in self.active):
            return False
        if busy:
            self.active.add(name)
        else:
            self.active.discard(name)
        return self.settings.policy == "shared" or self.plan.in_effect == "shared"

    # -- a new worker ------------------------------------------------------------------------

    def nice_of(self, spec: ModelSpec) -> int:
        """What a new worker of `spec` adds to its nice value: `cpu.nice` of its kind, else
        the kind's own `cpu_nice`."""
        return per_kind(self.settings.nice, spec, lambda kind: kind.cpu_nice, 0)

    def prepare(self, spec: ModelSpec, loaded: Sequence[ModelSpec], pin: bool = True
                ) -> tuple[ModelSpec, Assignment]:
        """The spec a new worker of `spec` gets (its planned thread count filled in where the
        option is unset) and its assignment (`cpus`: its affinity), planned with `loaded`
        (the models loaded beside it, `spec` among them in their order). `pin`: False for a
        model run inline (in the server's own process, which is never pinned)."""
        assignment = self._plan(loaded).models[spec.name]
        if not pin:
            assignment = Assignment(assignment.threads, assignment.explicit, None)
        if assignment.explicit or assignment.threads is None:
            return spec, assignment
        options = spec.options.model_copy(update={"threads": assignment.threads})
        return spec.model_copy(update={"options": options}), assignment

    def track(self, name: str, worker: Worker, assignment: Assignment, nice: int = 0) -> None:
        """`worker`, started with `assignment` (`prepare`'s) and `nice`, now serves `name`."""
        self._running[name] = _Running(worker, assignment.threads, assignment.explicit,
                                       assignment.cpus, nice)

    # -- re-planning -------------------------------------------------------------------------

    async def replan(self, loaded: Sequence[tuple[ModelSpec, Worker]],
                     activity: bool = False) -> None:
        """Plan for what is loaded (and busy) now, log it, and have every worker follow.
        `activity`: re-planned because a model became busy or idle (logged at debug level:
        that happens all day)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self.plan = self._plan([spec for spec, _ in loaded])
            logger.log(logging.DEBUG if activity else logging.INFO, "%s", self.plan.summary())
            live = {spec.name for spec, _ in loaded}
            for name in [n for n in self._running if n not in live]:
                del self._running[name]
            await asyncio.gather(*(self._follow(spec.name, worker) for spec, worker in loaded))

    async def _follow(self, name: str, worker: Worker) -> None:
        running = self._running.get(name)
        if running is None or running.worker is not worker:
            return  # made by something other than the lifecycle's load (not ours to move)
        target = self.plan.models[name]
        cpus = target.cpus if target.cpus is not None or running.cpus is None \
            else self.budget.cpus  # was pinned, now shared: back on every allowed core
        if worker.pid is not None and cpus is not None and cpus != running.cpus:
            await asyncio.to_thread(set_process_affinity, worker.pid, cpus)
            running.cpus = None if target.cpus is None else cpus
        if target.threads is not None and not target.explicit \
                and target.threads != running.threads:
            try:
                changed = await asyncio.wait_for(worker.acall("set_threads", target.threads),
                                                 SET_THREADS_TIMEOUT)
            except Exception as exc:  # dying, stalled: its restart is planned afresh
                logger.warning("model %s: could not change its threads: %s", name, exc)
                return
            if changed:
                running.threads = target.threads

    # -- what /admin/models shows ------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return self.plan.describe(self.settings.api_reserve_cores)

    def of(self, name: str, worker: Worker) -> dict[str, Any] | None:
        """What the worker of `name` runs with, and what its next load will (if other)."""
        running = self._running.get(name)
        if running is None or running.worker is not worker:
            return None
        target = self.plan.models.get(name)
        out = {"threads": running.threads,
               "threads_from": "option" if running.explicit else "plan",
               "affinity": None if running.cpus is None else list(running.cpus),
               "nice": running.nice}
        if target is not None and target.threads != running.threads:
            out["threads_at_next_load"] = target.threads
        return out
