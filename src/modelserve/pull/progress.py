"""What a pull tells its caller as it goes, and the one error it fails with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PullProgress:
    """One step of a pull, in Ollama's terms: `pulling manifest`, `pulling <digest>` (with
    bytes), `verifying sha256 digest`, `writing manifest`, `success`."""

    status: str
    total: int | None = None
    completed: int | None = None
    digest: str | None = None  # "sha256:<hex>" of the file being downloaded, when known


ProgressCallback = Callable[[PullProgress], None]


class PullError(Exception):
    """A pull that cannot finish: the message is one line a person can act on.

    `status` is the HTTP status the server answers with for it (400: the source is wrong,
    404: nothing there, 502: the remote failed, 507: no space here).
    """

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class PullCancelled(Exception):
    """Raised by a progress callback to stop a pull; its partial download is kept."""


def ignore(_: PullProgress) -> None:
    pass
