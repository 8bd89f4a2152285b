"""The messages between the API process and a model's worker process.

They travel pickled over a multiprocessing pipe (bench/ipc_transport.py measured pipe and
ZeroMQ round trips at 16-22 us, negligible against 10-70 ms engine steps; pickle carries the
numpy arrays, dataclasses and exceptions these messages hold without a schema per kind). The
worker batches what one engine step produced for all its sequences into one `Outputs`.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from typing import Any

from modelserve.engine.sequence import ImageSpan, SamplingParams, StepOutput

# -- API process -> worker ------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """Run `method` of the runtime (a coroutine method as a task, others in a thread)."""

    id: int
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Cancel:
    """The caller of `Call` `id` went away: cancel its task."""

    id: int


@dataclass(frozen=True)
class Submit:
    """Start generating stream `id` (chat); its outputs come back in `Outputs`."""

    id: int
    prompt: list[int]
    params: SamplingParams
    images: list[ImageSpan] = field(default_factory=list)


@dataclass(frozen=True)
class Abort:
    """Stop stream `id` at the engine's next step."""

    id: int


@dataclass(frozen=True)
class Stop:
    """Close the runtime and exit."""


# -- worker -> API process ------------------------------------------------------------------

@dataclass(frozen=True)
class Ready:
    """The runtime is built; `info` is what the kind's front end needs to know of it."""

    info: dict[str, Any]


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class Reply:
    id: int
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Replies:
    """The replies ready at one turn of the worker's loop (a batch of embeddings settles many
    calls at once: one message, one wake-up of the API process's loop)."""

    items: list[Reply]


@dataclass(frozen=True)
class Log:
    """A log record of the worker, handled by the API process's logging (one log stream)."""

    record: logging.LogRecord


@dataclass(frozen=True)
class Outputs:
    """Every stream output of one engine step, in order: (stream id, output)."""

    items: list[tuple[int, StepOutput]]


def dumps(message: object) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)  # our own worker, over a private pipe


def portable_error(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
