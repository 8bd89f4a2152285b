"""The messages between the API process and a model's worker process.

They travel pickled over a multiprocessing pipe (bench/ipc_transport.py measured pipe and
ZeroMQ round trips at 16-22 us, negligible against 10-70 ms engine steps; pickle carries the
numpy arrays, dataclasses and exceptions these messages hold without a schema per kind).

Two shapes of work fit every kind, so a new kind needs no new message type:
- a call (`Call` -> one `Reply`), for request/reply work: embed, generate images, render;
- a stream (`Open` -> items -> `End`), for work that answers piece by piece: chat tokens
  today, synthesized speech or a streamed transcript next.
`Cancel` stops either. The worker batches what one turn of its loop (or one engine step)
produced into one `Replies` or `Streamed` message: one pipe write, one wake-up.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import Any

# -- API process -> worker ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """Run `method` of the runtime (a coroutine method as a task, others in a thread)."""

    id: int
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Open:
    """Start stream `id`: `method` of the runtime produces its items (see worker/child.py
    for the three forms a stream method may take)."""

    id: int
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Cancel:
    """The caller of call or stream `id` went away: stop it (a stream still ends)."""

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
class End:
    """The last item of a stream: it finished (`error` None) or failed."""

    error: BaseException | None = None


@dataclass(frozen=True)
class Streamed:
    """Stream items in order, as (stream id, item or End): all that one engine step (or one
    turn of the worker's loop) produced, for every stream."""

    items: list[tuple[int, Any]]


@dataclass(frozen=True)
class Heartbeat:
    """The worker is alive and its loop turns (sent every `heartbeat_interval`; also while
    it loads, from a thread). Missing for `liveness_timeout_seconds`: it is killed."""


@dataclass(frozen=True)
class Fatal:
    """The worker hit a failure it cannot serve on (an exception ended its engine loop) and
    exits right after this; `reason` is what its requests and /admin/models report."""

    reason: str


@dataclass(frozen=True)
class Log:
    """A log record of the worker, handled by the API process's logging (one log stream)."""

    record: logging.LogRecord


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
