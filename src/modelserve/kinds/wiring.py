"""A kind's declaration (kinds/base.py) names two wirings by "module:attr", each imported
only in the process that uses it, so the declaration stays a leaf that config parsing reads
without llama.cpp, torch or the routers (and no import cycle runs through it):

- `KindRuntime`, in the worker process: how to build the runtime, what its front needs to
  know of it, its stats, and the hook that ends each engine step (runtimes/*.py);
- `KindServing`, in the API process: the front the routes hold, the routers, the memory
  estimate a load is admitted with, and a hook run once it is loaded (fronts/*.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from modelserve.kinds.base import ModelFront, ModelKind

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec
    from modelserve.engine.sequence import TimingSink
    from modelserve.worker.transport import Worker

R = TypeVar("R")
F = TypeVar("F", bound=ModelFront)


class ServerHooks(Protocol):
    """What a kind's load hook may take from the server (metrics.ServerMetrics)."""

    def timing_for(self, model: str) -> TimingSink: ...


@dataclass(frozen=True)
class KindRuntime(Generic[R]):
    build: Callable[[ModelSpec], R]
    # what the front needs to know of the built runtime (Ready.info)
    describe: Callable[[R], dict[str, Any]]
    # the kind's per-model stats (read by /metrics through `MetricDef.stats_field`)
    stats: Callable[[R], object]
    # hand the runtime the function that sends its streams' pending items, to call after
    # each engine step (one message per step for all its streams); None: they go at the
    # next turn of the worker's loop
    step_hook: Callable[[R, Callable[[], None]], None] | None = None
    # change the runtime's thread count while it runs (the CPU plan changed); returns
    # whether it took effect now (False: at its next load, e.g. an ONNX Runtime session).
    # None: never live, the count applies at the next load
    set_threads: Callable[[R, int], bool] | None = None


def _files_size(spec: ModelSpec) -> int:
    from modelserve.model_files import disk_bytes

    return disk_bytes(spec.resolve_source())


def _no_hook(front: Any, server: ServerHooks, name: str) -> None:
    """Most kinds have nothing to wire up once loaded."""


@dataclass(frozen=True)
class KindServing(Generic[F]):
    # (spec, its worker, the worker's describe(), state kept across its restarts) -> front
    front: Callable[[ModelSpec, Worker, dict[str, Any], dict[str, Any]], F]
    routers: Callable[[], Sequence[APIRouter]]
    # bytes it will hold once loaded (weights + caches), before it loads: admission
    # checks the memory budget and the host's free memory against it
    estimate: Callable[[ModelSpec], int] = _files_size
    on_loaded: Callable[[F, ServerHooks, str], None] = _no_hook


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def runtime_of(kind: ModelKind[Any]) -> KindRuntime[Any]:
    return cast(KindRuntime[Any], _resolve(kind.runtime))


def serving_of(kind: ModelKind[F]) -> KindServing[F]:
    return cast(KindServing[F], _resolve(kind.serving))
