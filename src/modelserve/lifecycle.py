"""Loading, unloading and restarting models, and the policies that decide when:

- admission: a load must fit the memory budget and the host's free memory by its kind's
  estimate (weights + caches), counting every live worker, a reload's old one included;
  least-recently-used idle models are evicted to make room (`max_loaded_models` too);
- keep-alive: a model idle past its keep-alive is unloaded;
- restarts: a worker that dies (a crash, an OOM kill, no heartbeat) is restarted after a
  backoff that doubles per failure in a row up to `restart_backoff_max_seconds`, and a
  restart that fails is tried again the same way (forever, unless `restart_max_attempts`).

The registry (registry.py) holds the states these steps move between, and the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from modelserve.config_sections import CpuSettings
from modelserve.cpu_apply import CpuPlanner
from modelserve.kinds import KINDS, ModelFront
from modelserve.kinds.wiring import KindServing, ServerHooks, serving_of
from modelserve.model_files import disk_bytes, revision
from modelserve.registry import (
    CapacityError,
    LoadedModel,
    ModelEntry,
    ModelNotFound,
    ModelRegistry,
    ModelState,
)
from modelserve.worker.handle import WorkerHandle
from modelserve.worker.local import LocalWorker
from modelserve.worker.memory import available_bytes
from modelserve.worker.transport import Worker

logger = logging.getLogger(__name__)

OnLoaded = Callable[[str, ModelFront, float], None]  # (name, front, load seconds)
# A model without requests for this long stops counting as busy in the CPU plan.
IDLE_AFTER_SECONDS = 1.0
# How long a freshly started worker gets to report its first stats (it is idle then).
FIRST_STATS_SECONDS = 10.0


class Lifecycle:
    def __init__(self, registry: ModelRegistry, hooks: ServerHooks | None = None,
                 cpu: CpuSettings | None = None) -> None:
        self.registry = registry
        self.policy = registry.policy
        self.hooks = hooks
        self.cpu = CpuPlanner(cpu)
        self.on_loaded: list[OnLoaded] = []
        self._load_lock: asyncio.Lock | None = None
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        registry.loader = self
        registry.on_busy = self._busy_changed

    # -- loading -----------------------------------------------------------------------------

    def start_load(self, name: str) -> asyncio.Task[bool]:
        """Load (or reload) in the background; the task ends True once ready, False if the
        load failed. A restart waiting out its backoff is started now instead."""
        entry = self.registry.entries[name]
        if entry.task is not None and not entry.task.done():
            return entry.task
        if entry.state is ModelState.RESTARTING and entry.restart is not None:
            entry.restart.cancel()
            entry.next_restart_at = None
            entry.set_state(ModelState.LOADING)
        if entry.current is not None and entry.current.spec == entry.spec:
            entry.task = asyncio.create_task(_done(True))  # already what was asked for
            return entry.task
        if entry.current is None:
            entry.set_state(ModelState.LOADING)
        entry.error = None
        entry.task = asyncio.create_task(self.load(entry), name=f"load {name}")
        return entry.task

    async def load_startup(self) -> None:
        """Load the preload models, one by one; a failure is recorded, never fatal."""
        await self.replan()  # logs the CPU budget even when nothing loads
        for name, entry in list(self.registry.entries.items()):
            if entry.spec.preload or entry.spec.pinned:
                await self.start_load(name)
        self.registry.started = True

    async def load(self, entry: ModelEntry) -> bool:
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        spec = entry.spec
        serving = serving_of(KINDS[spec.kind])
        async with self._load_lock:  # one load at a time: eviction decisions stay coherent
            started = time.monotonic()
            logger.info("loading model %s (%s on %s)", spec.name, spec.kind, spec.runtime)
            try:
                estimate, rev = await self._admit(entry, serving)
                loaded = await self._launch(entry, serving, estimate, rev)
            except Exception as exc:
                logger.error("model %s failed to load: %s", spec.name, exc)
                entry.error = str(exc)
                if entry.serving_spec is not None and (
                        entry.current is not None or entry.state is ModelState.RESTARTING):
                    # A failed reload leaves the old model serving (or restarting) under its
                    # old spec: a restart must not retry the spec that just failed.
                    entry.spec = entry.serving_spec
                if entry.state is ModelState.RESTARTING:
                    return False  # the restart loop tries again
                if entry.current is None:
                    entry.set_state(ModelState.FAILED)
                return False
            entry.load_seconds = time.monotonic() - started
            old, entry.current = entry.current, loaded
            # Set before anything else can run: a death from here on is seen (watch calls
            # at once for a worker that died during the front's build).
            loaded.worker.watch(lambda reason: self._worker_died(entry, loaded, reason))
            entry.error = None
            entry.serving_spec = spec
            entry.restart_attempts = 0
            entry.next_restart_at = None
            entry.set_state(ModelState.READY)
            entry.last_used = time.time()
            logger.info("model %s ready (revision %s) in %.2fs", spec.name, rev,
                        entry.load_seconds)
            if self.hooks is not None:
                serving.on_loaded(loaded.front, self.hooks, spec.name)
            for callback in self.on_loaded:
                callback(spec.name, loaded.front, entry.load_seconds)
        await self.replan()
        if old is not None:
            # Its own task: cancelling this load (an unload, an eviction) must not leave
            # the old worker running, uncounted.
            await asyncio.shield(self.registry.in_background(self.retire(old)))
        return True

    async def _admit(self, entry: ModelEntry, serving: KindServing[Any]) -> tuple[int, str]:
        """The load's memory estimate (room made for it, or CapacityError) and revision."""
        spec = entry.spec
        path = await asyncio.to_thread(spec.resolve_source)
        files = await asyncio.to_thread(disk_bytes, path)
        _check_host_memory(files, "its files take")  # before even reading them
        try:
            estimate = max(await asyncio.to_thread(serving.estimate, spec), files)
        except Exception:  # unreadable metadata: the load itself will say what is wrong
            estimate = files
        await self.make_room(entry, estimate)
        _check_host_memory(estimate, "it needs an estimated")
        return estimate, await asyncio.to_thread(revision, path)

    async def _launch(self, entry: ModelEntry, serving: KindServing[Any], estimate: int,
                      rev: str) -> LoadedModel:
        """The model's front over a new worker process (or an inline one)."""
        spec = entry.spec
        inline = self.policy.isolation == "inline"
        beside = []  # the models loaded once it is, in the registry's order
        for e in self.registry.entries.values():
            if e is entry:
                beside.append(spec)
            elif e.current is not None:
                beside.append(e.current.spec)
        worker_spec, cpu = self.cpu.prepare(spec, beside, pin=not inline)
        nice = 0 if inline else self.cpu.nice_of(spec)  # the server's own process: never
        worker: Worker = LocalWorker(worker_spec) if inline \
            else WorkerHandle(worker_spec, self.policy, cpu.cpus, nice)
        try:
            info = await worker.start()
            front = await asyncio.to_thread(serving.front, spec, worker, info, entry.kept)
        except BaseException:
            self.registry.in_background(asyncio.to_thread(worker.stop))
            raise
        self.cpu.track(spec.name, worker, cpu, nice)  # (a failed reload leaves the old one's)
        loaded = LoadedModel(front, worker, spec, rev, estimate, time.time())
        # Its first stats now, while it is idle: a scrape waits only 0.5 s for fresh ones and
        # keeps the last on a timeout, so without these a model whose worker answered late
        # (a busy machine) was missing from /metrics and /admin/summary altogether.
        await loaded.refresh_stats(FIRST_STATS_SECONDS)
        return loaded

    # -- restarts ----------------------------------------------------------------------------

    def _worker_died(self, entry: ModelEntry, loaded: LoadedModel, reason: str) -> None:
        """A ready model's worker ended on its own: restart it after a backoff."""
        if entry.current is not loaded:
            return  # already replaced or unloaded
        entry.current = None
        self.registry.in_background(self.retire(loaded, drain=False))
        if time.time() - loaded.loaded_at > self.policy.restart_backoff_max_seconds:
            entry.failures_in_a_row = 0  # it had been up a good while: not a crash loop
        delay = self._backoff(entry)
        entry.error = f"{reason}; restarting in {delay:g}s"
        entry.set_state(ModelState.RESTARTING)
        if entry.restart is not None:
            entry.restart.cancel()  # one restart loop per model
        entry.restart = self.registry.in_background(self._keep_restarting(entry, delay))

    def _backoff(self, entry: ModelEntry) -> float:
        entry.failures_in_a_row += 1
        doubled = self.policy.restart_backoff_seconds * 2.0 ** (entry.failures_in_a_row - 1)
        return min(doubled, self.policy.restart_backoff_max_seconds)

    async def _keep_restarting(self, entry: ModelEntry, delay: float) -> None:
        entry.restart_attempts = 0
        while True:
            entry.next_restart_at = time.time() + delay
            await asyncio.sleep(delay)
            entry.next_restart_at = None
            if entry.state is not ModelState.RESTARTING or entry.current is not None:
                return
            entry.restarts += 1
            entry.restart_attempts += 1
            if entry.task is None or entry.task.done():  # else: a reload is on its way
                logger.info("restarting model %s (attempt %d)", entry.spec.name,
                            entry.restart_attempts)
                entry.task = asyncio.create_task(self.load(entry),
                                                 name=f"restart {entry.spec.name}")
            if await asyncio.shield(entry.task):
                return
            limit = self.policy.restart_max_attempts
            if limit is not None and entry.restart_attempts >= limit:
                entry.error = f"gave up after {limit} failed restarts: {entry.error}"
                entry.set_state(ModelState.FAILED)
                return
            delay = self._backoff(entry)
            entry.error = (f"restart {entry.restart_attempts} failed: {entry.error}; "
                           f"next try in {delay:g}s")
            entry.set_state(ModelState.RESTARTING)  # wakes requests waiting on it

    # -- room ----------------------------------------------------------------------------

    async def make_room(self, target: ModelEntry, new_bytes: int) -> None:
        """Evict least-recently-used idle models until the new one fits the policy."""
        entries = self.registry.entries.values()
        while True:
            loaded = [e for e in entries if e.current is not None and e is not target]
            too_many = (self.policy.max_loaded_models is not None
                        and len(loaded) >= self.policy.max_loaded_models)
            budget = self.policy.memory_budget_mb
            too_big = (budget is not None
                       and self.registry.memory_in_use() + new_bytes > budget * 1024 * 1024)
            if not (too_many or too_big):
                return
            idle = [e for e in loaded if e.state is ModelState.READY and not e.spec.pinned
                    and e.in_flight == 0]
            if not idle:
                overlap = " (a reload runs beside the version it replaces until it is " \
                    "ready)" if target.current is not None else ""
                raise CapacityError(
                    "no room to load it: "
                    + ("max_loaded_models reached" if too_many else
                       f"the memory budget would be exceeded by its estimated "
                       f"{new_bytes // 2**20} MiB{overlap}")
                    + " and every loaded model is pinned or busy")
            victim = min(idle, key=lambda e: e.last_used or 0.0)
            logger.info("evicting idle model %s to make room for %s", victim.spec.name,
                        target.spec.name)
            await self.unload(victim.spec.name)

    # -- unloading ---------------------------------------------------------------------------

    async def unload(self, name: str) -> None:
        """Stop new requests, let those in flight finish (up to the grace period), free it."""
        entry = self.registry.entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        if entry.restart is not None:
            entry.restart.cancel()
            entry.next_restart_at = None
        if entry.task is not None and not entry.task.done():
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
        loaded, entry.current = entry.current, None
        entry.keep_alive = None  # a request's keep-alive lasts until the model unloads
        self.registry.required.discard(name)  # an operator's unload is no readiness failure
        if loaded is None:
            entry.set_state(ModelState.UNLOADED)
            return
        entry.set_state(ModelState.UNLOADING)
        try:
            await self.retire(loaded)
        finally:
            # Unless a load began meanwhile (a lazy request, an operator): its state stands.
            if entry.current is None and entry.state is ModelState.UNLOADING:
                entry.set_state(ModelState.UNLOADED)
        await self.replan()  # the others get its cores

    async def retire(self, loaded: LoadedModel, drain: bool = True) -> None:
        """Let its requests finish (up to the grace period), stop its worker, and close its
        front once the last request holding it has ended (a stream formatting its last
        tokens still reads the front's vocabulary)."""
        self.registry.retiring.add(loaded)
        try:
            if drain:
                deadline = time.monotonic() + self.policy.unload_grace_seconds
                while loaded.in_flight and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if loaded.in_flight:
                    logger.warning("unloading %s with %d requests still in flight",
                                   loaded.spec.name, loaded.in_flight)
            await asyncio.to_thread(loaded.worker.stop)
        finally:
            self.registry.retiring.discard(loaded)
            loaded.retired = True
            if loaded.in_flight == 0:
                loaded.front.close()
        logger.info("model %s stopped", loaded.spec.name)

    async def replan(self, activity: bool = False) -> None:
        """The CPU plan for what is loaded now, applied to the running workers."""
        loaded = [e.current for e in self.registry.entries.values()]
        await self.cpu.replan([(m.spec, m.worker) for m in loaded if m is not None], activity)

    def _busy_changed(self, name: str, busy: bool) -> None:
        """A model's first request began or its last ended. Busy counts at once; idle only
        after IDLE_AFTER_SECONDS without a request, so a stream of back-to-back requests does
        not re-plan between each two."""
        timer = self._idle_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if busy:
            self._set_active(name, True)
        else:
            self._idle_timers[name] = asyncio.get_running_loop().call_later(
                IDLE_AFTER_SECONDS, self._set_active, name, False)

    def _set_active(self, name: str, busy: bool) -> None:
        self._idle_timers.pop(name, None)
        if self.cpu.set_active(name, busy):
            self.registry.in_background(self.replan(activity=True))

    async def reap_idle(self) -> list[str]:
        """Unload models idle past their keep-alive; returns the names unloaded."""
        now, done = time.time(), []
        for name, entry in list(self.registry.entries.items()):
            keep = entry.idle_limit(self.policy)
            if keep is None or entry.state is not ModelState.READY or entry.in_flight:
                continue
            if now - (entry.last_used or now) >= keep:
                logger.info("unloading %s: idle for %.0fs", name, now - (entry.last_used or now))
                await self.unload(name)
                done.append(name)
        return done

    async def reap_forever(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reap_idle()
            except Exception:  # keep reaping whatever one unload did
                logger.exception("idle reaper failed")

    async def close(self) -> None:
        """Shutdown: stop every worker at once (each may take its time to close)."""
        stopping = []
        for entry in self.registry.entries.values():
            if entry.restart is not None:
                entry.restart.cancel()
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()
            if entry.current is not None:
                stopping.append(self.retire(entry.current, drain=False))
                entry.current = None
                entry.set_state(ModelState.UNLOADED)
        await asyncio.gather(*stopping, return_exceptions=True)


def _check_host_memory(needed: int, what: str) -> None:
    """Refuse a load the host cannot hold, before a worker starts and gets OOM-killed."""
    available = available_bytes()
    if available is not None and needed > available:
        raise CapacityError(f"not enough memory to load it: {what} {needed // 2**20} MiB and "
                            f"the host has {available // 2**20} MiB available")


async def _done(value: bool) -> bool:
    return value
