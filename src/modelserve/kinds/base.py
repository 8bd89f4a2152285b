"""What every model kind declares: its runtimes and options, how its runtime is built, its
routes, its scrape-time metrics and its load hook. The rest of the server reads these
declarations and never switches on a kind's name or its runtime class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec
    from modelserve.metrics import ServerMetrics
    from modelserve.worker.handle import WorkerHandle


class ModelRuntime(Protocol):
    """What the registry and /v1/models need of any loaded model, whatever its kind."""

    created: int  # Unix time it loaded: the `created` of its /v1/models card

    def close(self) -> None: ...


R = TypeVar("R", bound=ModelRuntime)


@dataclass(frozen=True)
class MetricDef:
    """One per-model series read at scrape time from the kind's `stats(runtime)` object."""

    name: str
    type: Literal["gauge", "counter"]
    help: str
    stats_field: str


def _no_hook(runtime: Any, metrics: ServerMetrics, name: str) -> None:
    """Most kinds have nothing to wire up once loaded."""


def _no_extra_sources(spec: ModelSpec) -> list[tuple[str, object]]:
    return []


@dataclass(frozen=True)
class ModelKind(Generic[R]):
    """One model kind. `R` is its runtime class, so a typed lookup hands routes that class
    (or its front end, which offers the routes the same methods).

    `build`, `front`, `routers` and `stats` import their modules when called: config parsing
    reads this declaration, and must not pull in llama.cpp, torch or diffusers.
    """

    name: str
    # runtime name (the YAML `runtime:`) -> the pydantic model of its `options:`
    runtimes: dict[str, type[BaseModel]]
    default_runtime: str
    build: Callable[[ModelSpec], R]
    # In the worker process: what the front end needs to know of the built runtime.
    describe: Callable[[R], dict[str, Any]]
    # In the API process: what the routes hold while the runtime runs in its worker.
    front: Callable[[ModelSpec, WorkerHandle, dict[str, Any]], R]
    routers: Callable[[], Sequence[APIRouter]]
    metrics: tuple[MetricDef, ...]
    stats: Callable[[R], object]
    # what the wrong-kind error says this kind's models are used for
    use: str
    on_loaded: Callable[[R, ServerMetrics, str], None] = _no_hook
    # (request param, source) of files besides `source` that an admin load must check
    extra_sources: Callable[[ModelSpec], list[tuple[str, object]]] = field(
        default=_no_extra_sources)
