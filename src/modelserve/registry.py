"""Which models exist, their load state, and the policies that load and unload them.

Requests are routed here by their `model` field. Every state change happens on the event
loop; the slow parts (starting and stopping workers) run off it, so other models keep
serving while one loads or unloads. Each loaded model runs in a worker process of its own
(`lifecycle.isolation: process`, see worker/); one that dies is marked failed and restarted
with backoff while the others keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast

from modelserve.config import ModelSpec
from modelserve.config_sections import LifecycleSettings
from modelserve.kinds import KINDS, ModelKind, ModelRuntime
from modelserve.model_files import disk_bytes, release_freed_memory, revision
from modelserve.worker.handle import WorkerHandle
from modelserve.worker.memory import available_bytes

# Kept as the registry's name for "any loaded model's runtime".
Runtime = ModelRuntime
T = TypeVar("T")
R = TypeVar("R", bound=ModelRuntime)

logger = logging.getLogger(__name__)


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


class ModelNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class ModelUnavailable(RuntimeError):
    """The model exists but cannot take requests now (loading, unloading, failed)."""

    def __init__(self, name: str, state: ModelState, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.state = state


class CapacityError(RuntimeError):
    """Loading would break max_loaded_models or the memory budget and nothing can go."""


def build_runtime(spec: ModelSpec) -> Runtime:
    built: Runtime = KINDS[spec.kind].build(spec)
    return built


@dataclass(eq=False)
class LoadedModel:
    """One loaded instance of a model; a reload makes a new one while the old drains."""

    runtime: Runtime  # in process mode, the kind's front end
    spec: ModelSpec
    revision: str
    estimated_bytes: int  # weights + KV, or the files' size
    loaded_at: float
    worker: WorkerHandle | None = None  # None in inline mode
    stats: object | None = None  # the worker's last kind stats (refresh_stats)
    in_flight: int = 0

    @property
    def memory_bytes(self) -> int:
        """The worker's resident memory; the estimate when the model runs inline."""
        return self.worker.rss_bytes() if self.worker is not None else self.estimated_bytes


@dataclass(eq=False)
class ModelEntry:
    spec: ModelSpec
    origin: str = "config"  # or "admin"
    state: ModelState = ModelState.UNLOADED
    current: LoadedModel | None = None
    error: str | None = None
    last_used: float | None = None
    load_seconds: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    restart: asyncio.Task[None] | None = field(default=None, repr=False)
    restarts: int = 0  # worker restarts after a crash, ever
    crashes_in_a_row: int = 0

    @property
    def in_flight(self) -> int:
        return self.current.in_flight if self.current else 0

    def describe(self) -> dict[str, Any]:
        cur = self.current
        return {
            "name": self.spec.name, "kind": self.spec.kind, "runtime": self.spec.runtime,
            "source": self.spec.source.model_dump() if not isinstance(self.spec.source, str)
            else self.spec.source,
            "state": self.state.value, "error": self.error, "origin": self.origin,
            "pinned": self.spec.pinned, "revision": cur.revision if cur else None,
            "memory_bytes": cur.memory_bytes if cur else 0,
            "loaded_at": cur.loaded_at if cur else None, "last_used": self.last_used,
            "load_seconds": self.load_seconds, "in_flight": self.in_flight,
            "pid": cur.worker.pid if cur and cur.worker else None, "restarts": self.restarts,
        }


class Lease:
    """A request's hold on a loaded model: unload waits for leases to be released."""

    def __init__(self, entry: ModelEntry, loaded: LoadedModel) -> None:
        self.entry = entry
        self.loaded = loaded
        self.runtime = loaded.runtime
        self._released = False
        loaded.in_flight += 1
        entry.last_used = time.time()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.loaded.in_flight -= 1
            self.entry.last_used = time.time()


class ModelRegistry:
    def __init__(self, specs: list[ModelSpec], policy: LifecycleSettings | None = None) -> None:
        self.policy = policy or LifecycleSettings()
        self.entries = {spec.name: ModelEntry(spec) for spec in specs}
        self.required = {spec.name for spec in specs if spec.preload or spec.pinned}
        self.started = False
        self._load_lock: asyncio.Lock | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.on_loaded: list[Any] = []  # callbacks (name, runtime, seconds) for metrics

    # -- queries -----------------------------------------------------------------------------

    def loaded(self) -> dict[str, Runtime]:
        return {name: e.current.runtime for name, e in self.entries.items()
                if e.current is not None and e.state is ModelState.READY}

    def loaded_of(self, kind: ModelKind[R]) -> dict[str, R]:
        """The ready models of one kind, typed as that kind's runtime."""
        # The kind's own `build` made each of these, so each is that kind's runtime class.
        return {name: cast(R, e.current.runtime) for name, e in self.entries.items()
                if e.current is not None and e.state is ModelState.READY
                and e.current.spec.kind == kind.name}

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready once start-up loading finished and every required model is ready."""
        if not self.started:
            return False, {"status": "loading"}
        not_ready = {name: self.entries[name].state.value for name in sorted(self.required)
                     if name in self.entries
                     and self.entries[name].state is not ModelState.READY}
        return not not_ready, not_ready

    def memory_in_use(self) -> int:
        return sum(e.current.memory_bytes for e in self.entries.values() if e.current)

    def stats_of(self, kind: ModelKind[Any]) -> dict[str, object]:
        """Each ready model's kind stats: read now inline, or the worker's last report."""
        out: dict[str, object] = {}
        for name, e in self.entries.items():
            cur = e.current
            if cur is None or e.state is not ModelState.READY or cur.spec.kind != kind.name:
                continue
            stats = cur.stats if cur.worker is not None else kind.stats(cur.runtime)
            if stats is not None:
                out[name] = stats
        return out

    async def refresh_stats(self, timeout: float = 0.5) -> None:
        """Ask every worker for its kind stats (before a scrape). A worker that does not answer
        within `timeout` keeps its last stats: a scrape must stay quick, well inside the
        server's own `request_timeout_seconds`, even while a model is busy."""
        async def one(loaded: LoadedModel) -> None:
            assert loaded.worker is not None
            with contextlib.suppress(Exception):
                loaded.stats = await asyncio.wait_for(loaded.worker.acall("stats"), timeout)

        await asyncio.gather(*(one(e.current) for e in self.entries.values()
                               if e.current is not None and e.current.worker is not None))

    # -- requests ----------------------------------------------------------------------------

    async def acquire(self, name: str) -> Lease:
        """Hold a ready model for one request, loading it first if policy allows."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        if entry.state is ModelState.UNLOADED and self.policy.lazy_load:
            self.start_load(name)
        if entry.state is ModelState.LOADING and entry.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(entry.task), self.policy.load_wait_seconds)
        if entry.state is ModelState.READY and entry.current is not None:
            return Lease(entry, entry.current)
        raise ModelUnavailable(name, entry.state, self._why(entry))

    @staticmethod
    def _why(entry: ModelEntry) -> str:
        if entry.state is ModelState.FAILED:
            return f"it failed to load: {entry.error}"
        return f"it is {entry.state.value}"

    def in_background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` as a task that outlives the request that started it."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- loading -----------------------------------------------------------------------------

    def add(self, spec: ModelSpec) -> ModelEntry:
        """Register an admin-supplied spec (a new name, or a new spec for a known one)."""
        entry = self.entries.get(spec.name)
        if entry is None:
            entry = self.entries[spec.name] = ModelEntry(spec, origin="admin")
        else:
            entry.spec = spec
        return entry

    def start_load(self, name: str) -> asyncio.Task[None]:
        """Load (or reload) in the background; the returned task ends when ready or failed."""
        entry = self.entries[name]
        if entry.task is not None and not entry.task.done():
            return entry.task
        if entry.current is not None and entry.current.spec == entry.spec:
            entry.task = asyncio.create_task(asyncio.sleep(0))  # already what was asked for
            return entry.task
        if entry.current is None:
            entry.state = ModelState.LOADING
        entry.error = None
        entry.task = asyncio.create_task(self._load(entry), name=f"load {name}")
        return entry.task

    async def _load(self, entry: ModelEntry) -> None:
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        spec = entry.spec
        async with self._load_lock:  # one load at a time: eviction decisions stay coherent
            started = time.monotonic()
            try:
                path = await asyncio.to_thread(spec.resolve_source)
                size = await asyncio.to_thread(disk_bytes, path)
                await self._make_room(entry, size)
                _check_host_memory(size)
                runtime, worker = await self._launch(spec)
                rev = await asyncio.to_thread(revision, path)
            except Exception as exc:
                logger.error("model %s failed to load: %s", spec.name, exc)
                entry.error = str(exc)
                if entry.current is None:
                    entry.state = ModelState.FAILED
                else:  # a failed reload leaves the old model serving, under its old spec
                    entry.spec = entry.current.spec
                return
            entry.load_seconds = time.monotonic() - started
            loaded = LoadedModel(runtime, spec, rev, _estimated_bytes(runtime, size), time.time(),
                                 worker)
            old, entry.current = entry.current, loaded
            if worker is not None:
                worker.on_death = lambda reason: self._worker_died(entry, loaded, reason)
            entry.state = ModelState.READY
            entry.last_used = time.time()
            logger.info("model %s ready (revision %s) in %.2fs", spec.name, rev,
                        entry.load_seconds)
            for callback in self.on_loaded:
                callback(spec.name, runtime, entry.load_seconds)
        if old is not None:
            await self._drain_and_close(spec.name, old)

    async def _launch(self, spec: ModelSpec) -> tuple[Runtime, WorkerHandle | None]:
        """The model's runtime: its front end over a new worker process, or built inline."""
        if self.policy.isolation == "inline":
            return await _build(spec), None
        worker = WorkerHandle(spec)
        try:
            info = await worker.start()
            front = await asyncio.to_thread(KINDS[spec.kind].front, spec, worker, info)
        except BaseException:
            await asyncio.to_thread(worker.kill)
            raise
        return front, worker

    def _worker_died(self, entry: ModelEntry, loaded: LoadedModel, reason: str) -> None:
        """A ready model's worker ended on its own: fail it, restart it after a backoff."""
        if entry.current is not loaded:
            return  # already replaced or unloaded
        entry.current = None
        entry.state = ModelState.FAILED
        if time.time() - loaded.loaded_at > self.policy.restart_backoff_max_seconds:
            entry.crashes_in_a_row = 0  # it had been up a good while: not a crash loop
        entry.crashes_in_a_row += 1
        delay = min(self.policy.restart_backoff_seconds * 2 ** (entry.crashes_in_a_row - 1),
                    self.policy.restart_backoff_max_seconds)
        entry.error = f"{reason}; restarting in {delay:g}s"
        self.in_background(asyncio.to_thread(_close, loaded.runtime))
        entry.restart = self.in_background(self._restart(entry, delay))

    async def _restart(self, entry: ModelEntry, delay: float) -> None:
        await asyncio.sleep(delay)
        if entry.state is ModelState.FAILED and entry.current is None:
            entry.restarts += 1
            logger.info("restarting model %s", entry.spec.name)
            await self.start_load(entry.spec.name)

    async def _make_room(self, target: ModelEntry, new_bytes: int) -> None:
        """Evict least-recently-used idle models until the new one fits the policy."""
        while True:
            loaded = [e for e in self.entries.values()
                      if e.current is not None and e is not target]
            too_many = (self.policy.max_loaded_models is not None
                        and len(loaded) >= self.policy.max_loaded_models)
            budget = self.policy.memory_budget_mb
            too_big = (budget is not None and target.current is None
                       and self.memory_in_use() + new_bytes > budget * 1024 * 1024)
            if not (too_many or too_big):
                return
            idle = [e for e in loaded if e.state is ModelState.READY and not e.spec.pinned
                    and e.in_flight == 0]
            if not idle:
                raise CapacityError(
                    "no room to load it: "
                    + ("max_loaded_models reached" if too_many else "memory budget exceeded")
                    + " and every loaded model is pinned or busy")
            victim = min(idle, key=lambda e: e.last_used or 0.0)
            logger.info("evicting idle model %s to make room for %s", victim.spec.name,
                        target.spec.name)
            await self.unload(victim.spec.name)

    async def load_startup(self) -> None:
        """Load the preload models, one by one; a failure is recorded, never fatal."""
        for name, entry in list(self.entries.items()):
            if entry.spec.preload or entry.spec.pinned:
                await self.start_load(name)
        self.started = True

    # -- unloading ---------------------------------------------------------------------------

    async def unload(self, name: str) -> None:
        """Stop new requests, let those in flight finish (up to the grace period), free it."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        if entry.restart is not None:
            entry.restart.cancel()
        if entry.task is not None and not entry.task.done():
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
        loaded, entry.current = entry.current, None
        self.required.discard(name)  # an operator's unload is not a readiness failure
        if loaded is None:
            entry.state = ModelState.UNLOADED
            return
        entry.state = ModelState.UNLOADING
        try:
            await self._drain_and_close(name, loaded)
        finally:
            if entry.current is None:
                entry.state = ModelState.UNLOADED

    async def _drain_and_close(self, name: str, loaded: LoadedModel) -> None:
        deadline = time.monotonic() + self.policy.unload_grace_seconds
        while loaded.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if loaded.in_flight:
            logger.warning("unloading %s with %d requests still in flight", name,
                           loaded.in_flight)
        await asyncio.to_thread(_close, loaded.runtime)
        logger.info("model %s unloaded", name)

    async def reap_idle(self) -> list[str]:
        """Unload models idle past their keep-alive; returns the names unloaded."""
        now, done = time.time(), []
        for name, entry in list(self.entries.items()):
            keep = entry.spec.keep_alive_seconds
            if keep is None:
                keep = self.policy.keep_alive_seconds
            if (keep is None or keep < 0 or entry.spec.pinned
                    or entry.state is not ModelState.READY or entry.in_flight):
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
        for name in list(self.entries):
            entry = self.entries[name]
            if entry.restart is not None:
                entry.restart.cancel()
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()
            if entry.current is not None:
                loaded, entry.current = entry.current, None
                await asyncio.to_thread(_close, loaded.runtime)
                entry.state = ModelState.UNLOADED


async def _build(spec: ModelSpec) -> Runtime:
    """Build in a thread; if the load is cancelled meanwhile, close what the thread builds."""
    future = asyncio.ensure_future(asyncio.to_thread(build_runtime, spec))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        def discard(done: asyncio.Future[Runtime]) -> None:
            if not done.cancelled() and done.exception() is None:
                threading.Thread(target=_close, args=(done.result(),), daemon=True).start()
        future.add_done_callback(discard)
        raise


def _close(runtime: Runtime) -> None:
    runtime.close()
    release_freed_memory()


def _check_host_memory(needed: int) -> None:
    """Refuse a load the host cannot hold, before a worker starts and gets OOM-killed."""
    available = available_bytes()
    if available is not None and needed > available:
        raise CapacityError(f"not enough memory to load it: its files take "
                            f"{needed // 2**20} MiB and the host has {available // 2**20} MiB "
                            "available")


def _estimated_bytes(runtime: Runtime, files_bytes: int) -> int:
    """The runtime's own estimate (weights + KV), else the size of its files."""
    estimate = getattr(runtime, "memory_bytes", None)
    return estimate if isinstance(estimate, int) else files_bytes
