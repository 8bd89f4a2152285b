"""Every model kind the server knows, by name. A new kind is one module here and one entry
in KINDS; config, the registry, the routes and /metrics all read from this table."""

from __future__ import annotations

from typing import Any

from modelserve.kinds.base import MetricDef, ModelKind, ModelRuntime
from modelserve.kinds.chat import CHAT
from modelserve.kinds.embeddings import EMBEDDINGS
from modelserve.kinds.images import IMAGES

KINDS: dict[str, ModelKind[Any]] = {k.name: k for k in (CHAT, EMBEDDINGS, IMAGES)}


def kind_of_runtime(runtime: str) -> ModelKind[Any] | None:
    """The kind that serves a `runtime:` name (each runtime belongs to one kind)."""
    return next((k for k in KINDS.values() if runtime in k.runtimes), None)


__all__ = ["KINDS", "MetricDef", "ModelKind", "ModelRuntime", "kind_of_runtime"]
