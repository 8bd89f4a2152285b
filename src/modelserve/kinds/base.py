"""What every model kind declares: its runtimes and their options, what its models are used
for, its scrape-time metrics, and where its two wirings live (kinds/wiring.py). The rest of
the server reads these declarations and never switches on a kind's name or its classes.

`F` is the kind's front: what the routes hold of one of its models in the API process, typed
as a Protocol the kind's module declares (e.g. kinds/chat.py's ChatModel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel


class ModelFront(Protocol):
    """What the registry and /v1/models need of any loaded model's front, whatever its kind."""

    created: int  # Unix time it loaded: the `created` of its /v1/models card

    def card(self) -> dict[str, Any]:
        """Fields of its /v1/models card besides id, kind and state."""

    def close(self) -> None:
        """Free what it holds in the API process (after the last request using it)."""


F = TypeVar("F", bound=ModelFront)


@dataclass(frozen=True)
class MetricDef:
    """One per-model series read at scrape time from the kind's `stats(runtime)` object."""

    name: str
    type: Literal["gauge", "counter"]
    help: str
    stats_field: str


def _no_extra_sources(options: Any) -> list[tuple[str, object]]:
    return []


@dataclass(frozen=True)
class ModelKind(Generic[F]):
    name: str
    # runtime name (the YAML `runtime:`) -> the pydantic model of its `options:`
    runtimes: dict[str, type[BaseModel]]
    default_runtime: str
    # what the wrong-kind error says this kind's models are used for
    use: str
    metrics: tuple[MetricDef, ...]
    runtime: str  # "module:attr" of its KindRuntime (imported in the worker process)
    serving: str  # "module:attr" of its KindServing (imported in the API process)
    # (request param, source) of files besides `source` that an admin load must check,
    # from the runtime's options
    extra_sources: Callable[[Any], list[tuple[str, object]]] = field(
        default=_no_extra_sources)
    # its share of the cores, against other kinds', when the CPU plan partitions them
    # (cpu_plan.py): a decoding chat model uses every core it has, an encoder less often
    cpu_weight: float = 1.0
    # added to its workers' nice value (`cpu.nice` replaces it): kinds whose requests are
    # batch work give way to interactive ones when the cores are short
    cpu_nice: int = 0
