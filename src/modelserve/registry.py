"""Which models exist, their states, and the leases requests hold on them.

Requests are routed here by their `model` field. Every state change happens on the event
loop; the slow parts (starting and stopping workers) run off it, so other models keep
serving while one loads or unloads. Each loaded model runs in a worker process of its own
(`lifecycle.isolation: process`, see worker/). Loading, unloading and the policies that
decide when (eviction, keep-alive, restart backoff, memory admission) are in lifecycle.py.

    unloaded -> loading -> ready -> unloading -> unloaded
                   |          |  worker died (crash, OOM kill, no heartbeat)
                   v          v
                failed <- restarting (tries again with a capped backoff; `failed` only
                                      after `restart_max_attempts`, unlimited by default)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from modelserve.config import ModelSpec
from modelserve.config_sections import LifecycleSettings
from modelserve.kinds import ModelFront, ModelKind
from modelserve.worker.transport import Worker

T = TypeVar("T")
F = TypeVar("F", bound=ModelFront)


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    RESTARTING = "restarting"  # its worker died; a new one starts after the backoff
    FAILED = "failed"  # a load failed (or restarts gave up): an operator must load it


class ModelNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class ModelUnavailable(RuntimeError):
    """The model exists but cannot take requests now; `retry_after` seconds is a fair
    guess of when it may."""

    def __init__(self, name: str, state: ModelState, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.name = name
        self.state = state
        self.retry_after = retry_after


class CapacityError(RuntimeError):
    """Loading would break max_loaded_models or the memory budget and nothing can go."""


@dataclass(eq=False)
class LoadedModel:
    """One loaded instance of a model; a reload makes a new one while the old drains."""

    front: ModelFront
    worker: Worker
    spec: ModelSpec
    revision: str
    estimated_bytes: int  # the kind's estimate (weights + caches)
    loaded_at: float
    stats: object | None = None  # the worker's last kind stats (refresh_stats)
    in_flight: int = 0
    retired: bool = False  # no new leases; its front closes once the last one ends

    async def refresh_stats(self, timeout: float) -> None:
        """Ask the worker for its kind stats; without an answer in `timeout`, keep the last."""
        with contextlib.suppress(Exception):
            self.stats = await asyncio.wait_for(self.worker.acall("stats"), timeout)

    @property
    def memory_bytes(self) -> int:
        """What it holds: its worker's resident memory or the estimate, the larger (a
        worker still warming up has not touched its KV cache yet)."""
        if self.worker.exit_reason is not None:
            return 0
        return max(self.worker.rss_bytes(), self.estimated_bytes)

    def release(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self.front.close()


@dataclass(eq=False)
class ModelEntry:
    spec: ModelSpec
    origin: str = "config"  # or "admin"
    state: ModelState = ModelState.UNLOADED
    current: LoadedModel | None = None
    serving_spec: ModelSpec | None = None  # the spec of the last load that worked
    error: str | None = None
    last_used: float | None = None
    # A request's keep-alive in seconds (Ollama's `keep_alive`), over the spec's and the
    # policy's until another request sets it or the model unloads; negative: forever.
    keep_alive: float | None = None
    load_seconds: float | None = None
    task: asyncio.Task[bool] | None = field(default=None, repr=False)  # a load in progress
    restart: asyncio.Task[None] | None = field(default=None, repr=False)
    restarts: int = 0  # restart attempts after a crash, ever
    failures_in_a_row: int = 0  # crashes and failed restarts since it last served a while
    restart_attempts: int = 0  # of the present restart (0 while it serves)
    next_restart_at: float | None = None  # Unix time of the next try while restarting
    # What its kind keeps across restarts and reloads (the images kind's url store).
    kept: dict[str, Any] = field(default_factory=dict, repr=False)
    _changed: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def in_flight(self) -> int:
        return self.current.in_flight if self.current else 0

    def set_state(self, state: ModelState) -> None:
        self.state = state
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def changed(self, timeout: float) -> None:
        """Wait up to `timeout` for its next state change."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)

    def idle_limit(self, policy: LifecycleSettings) -> float | None:
        """Seconds it stays loaded once idle (a request's keep-alive, the spec's, the
        policy's); None: no limit (pinned, or a negative or absent keep-alive)."""
        if self.spec.pinned:
            return None
        for keep in (self.keep_alive, self.spec.keep_alive_seconds, policy.keep_alive_seconds):
            if keep is not None:
                return keep if keep >= 0 else None
        return None

    def restart_in(self) -> float | None:
        """Seconds to the next restart attempt; None when none waits."""
        if self.next_restart_at is None:
            return None
        return max(self.next_restart_at - time.time(), 0.0)

    def keep_alive_left(self, policy: LifecycleSettings) -> float | None:
        """Seconds until the idle reaper unloads it (its whole keep-alive while requests are
        in flight: the idle clock starts at the last one's end); None when it is not loaded
        or nothing unloads it (pinned, no keep-alive)."""
        keep = self.idle_limit(policy)
        if keep is None or self.state is not ModelState.READY:
            return None
        if self.in_flight or self.last_used is None:
            return keep
        return max(self.last_used + keep - time.time(), 0.0)

    def describe(self, policy: LifecycleSettings | None = None) -> dict[str, Any]:
        """What /admin/models says of it; with the server's `policy`, also the keep-alive
        left. KV use is the chat engine's, as its worker last reported it (refresh_stats)."""
        cur = self.current
        stats = cur.stats if cur else None
        left = self.keep_alive_left(policy) if policy is not None else None
        return {
            "name": self.spec.name, "kind": self.spec.kind, "runtime": self.spec.runtime,
            "source": self.spec.source.model_dump() if not isinstance(self.spec.source, str)
            else self.spec.source,
            "state": self.state.value, "error": self.error, "origin": self.origin,
            "pinned": self.spec.pinned, "revision": cur.revision if cur else None,
            "memory_bytes": cur.memory_bytes if cur else 0,
            "rss_bytes": cur.worker.rss_bytes() if cur else 0,
            "estimated_bytes": cur.estimated_bytes if cur else None,
            "loaded_at": cur.loaded_at if cur else None, "last_used": self.last_used,
            "load_seconds": self.load_seconds, "in_flight": self.in_flight,
            "pid": cur.worker.pid if cur else None, "restarts": self.restarts,
            "restart_attempts": self.restart_attempts,
            "next_restart_at": self.next_restart_at,
            "pipe_bytes_sent": cur.worker.sent_bytes if cur else 0,
            "pipe_bytes_received": cur.worker.received_bytes if cur else 0,
            # the longest its worker went unheard: what liveness_timeout_seconds must exceed
            "longest_silence_seconds": round(cur.worker.longest_silence, 3) if cur else None,
            "keep_alive_seconds_left": round(left, 1) if left is not None else None,
            "kv_used_tokens": getattr(stats, "kv_used_tokens", None),
            "kv_capacity_tokens": getattr(stats, "kv_capacity_tokens", None),
        }


OnBusy = Callable[[str, bool], None]  # (model, busy): its first lease taken, its last released


class Lease:
    """A request's hold on a loaded model: unload waits for leases to be released, and the
    model's front is closed only once the last one is."""

    def __init__(self, entry: ModelEntry, loaded: LoadedModel,
                 on_busy: OnBusy | None = None) -> None:
        self.entry = entry
        self.loaded = loaded
        self.front = loaded.front
        self._released = False
        self._on_busy = on_busy
        loaded.in_flight += 1
        entry.last_used = time.time()
        if loaded.in_flight == 1 and on_busy is not None:
            on_busy(entry.spec.name, True)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.loaded.release()
            self.entry.last_used = time.time()
            if self.loaded.in_flight == 0 and self._on_busy is not None:
                self._on_busy(self.entry.spec.name, False)


class Loader(Protocol):
    """What starts loads (lifecycle.Lifecycle): the registry asks it for lazy loads."""

    def start_load(self, name: str) -> asyncio.Task[bool]: ...


class ModelRegistry:
    def __init__(self, specs: list[ModelSpec], policy: LifecycleSettings | None = None) -> None:
        self.policy = policy or LifecycleSettings()
        self.entries = {spec.name: ModelEntry(spec) for spec in specs}
        self.required = {spec.name for spec in specs if spec.preload or spec.pinned}
        self.started = False
        self.retiring: set[LoadedModel] = set()  # replaced or unloaded, still draining
        self._background: set[asyncio.Task[Any]] = set()
        self.loader: Loader | None = None  # set by the Lifecycle that manages these models
        self.on_busy: OnBusy | None = None  # the Lifecycle's too: busy models share the cores

    # -- queries -----------------------------------------------------------------------------

    def loaded_of(self, kind: ModelKind[F]) -> dict[str, F]:
        """The ready models of one kind, typed as that kind's front."""
        # The kind's own serving wiring made each of these fronts.
        return {name: cast(F, e.current.front) for name, e in self.entries.items()
                if e.current is not None and e.state is ModelState.READY
                and e.current.spec.kind == kind.name}

    def kept_values(self, key: str) -> list[Any]:
        """What kinds keep under `key` across their models' restarts (all models)."""
        return [e.kept[key] for e in self.entries.values() if key in e.kept]

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready once start-up loading finished and every required model is ready."""
        if not self.started:
            return False, {"status": "loading"}
        not_ready = {name: self.entries[name].state.value for name in sorted(self.required)
                     if name in self.entries
                     and self.entries[name].state is not ModelState.READY}
        return not not_ready, not_ready

    def memory_in_use(self) -> int:
        """Every live instance: current ones, and replaced ones still draining (a reload's
        two workers overlap, and both hold memory meanwhile)."""
        live = [e.current for e in self.entries.values() if e.current is not None]
        return sum(m.memory_bytes for m in [*live, *self.retiring])

    def stats_of(self, kind: ModelKind[Any]) -> dict[str, object]:
        """Each ready model's kind stats, as its worker last reported them."""
        return {name: e.current.stats for name, e in self.entries.items()
                if e.current is not None and e.state is ModelState.READY
                and e.current.spec.kind == kind.name and e.current.stats is not None}

    async def refresh_stats(self, timeout: float = 0.5) -> None:
        """Ask every worker for its kind stats (before a scrape). A worker that does not answer
        within `timeout` keeps its last stats: a scrape must stay quick, well inside the
        server's own `request_timeout_seconds`, even while a model is busy or stalled."""
        await asyncio.gather(*(e.current.refresh_stats(timeout) for e in self.entries.values()
                               if e.current is not None and e.current.worker.responsive))

    # -- requests ----------------------------------------------------------------------------

    async def acquire(self, name: str, deadline: float | None = None) -> Lease:
        """Hold a ready model for one request. A model loading or restarting is waited for,
        up to `load_wait_seconds` and the request's own `deadline` (loop time); one that
        will not be back in that time is refused at once, with when to retry."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        if entry.state is ModelState.UNLOADED and self.policy.lazy_load \
                and self.loader is not None:
            self.loader.start_load(name)
        loop = asyncio.get_running_loop()
        until = loop.time() + self.policy.load_wait_seconds
        if deadline is not None:
            until = min(until, deadline)
        while entry.state in (ModelState.LOADING, ModelState.RESTARTING):
            left = until - loop.time()
            restart_in = entry.restart_in()
            if left <= 0 or (restart_in is not None and restart_in > left):
                break
            await entry.changed(left)
        if entry.state is ModelState.READY and entry.current is not None:
            return Lease(entry, entry.current, self.on_busy)
        raise ModelUnavailable(name, entry.state, self._why(entry), self._retry_after(entry))

    @staticmethod
    def _why(entry: ModelEntry) -> str:
        if entry.state is ModelState.FAILED:
            return f"it failed to load: {entry.error}"
        if entry.state is ModelState.RESTARTING:
            return f"it is restarting ({entry.error})"
        return f"it is {entry.state.value}"

    @staticmethod
    def _retry_after(entry: ModelEntry) -> float:
        restart_in = entry.restart_in()
        if restart_in is not None:
            return math.ceil(restart_in) + 1.0
        return 10.0 if entry.state is ModelState.FAILED else 5.0

    def in_background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` as a task that outlives the request that started it."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def add(self, spec: ModelSpec) -> ModelEntry:
        """Register an admin-supplied spec (a new name, or a new spec for a known one)."""
        entry = self.entries.get(spec.name)
        if entry is None:
            entry = self.entries[spec.name] = ModelEntry(spec, origin="admin")
        else:
            entry.spec = spec
        return entry
