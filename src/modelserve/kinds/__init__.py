"""Every model kind the server knows, by name. A kind is one declaration (kinds/base.py):
config, the registry, the routes, the workers and /metrics all read from this table.

Kinds from outside the package join through the `modelserve.kinds` entry point group, or
`MODELSERVE_KINDS` ("module:attr,..."), each naming a ModelKind; a worker process reads the
same table, so such a kind runs in a worker like a built-in one.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from modelserve.kinds.audio import SPEECH, TRANSCRIPTION
from modelserve.kinds.base import MetricDef, ModelFront, ModelKind
from modelserve.kinds.chat import CHAT
from modelserve.kinds.embeddings import EMBEDDINGS
from modelserve.kinds.images import IMAGES
from modelserve.kinds.rerank import RERANK

KINDS: dict[str, ModelKind[Any]] = {
    k.name: k for k in (CHAT, EMBEDDINGS, IMAGES, RERANK, TRANSCRIPTION, SPEECH)}


def load_plugins() -> None:
    """Add the outside kinds to KINDS (the server's and each worker's entry point call it,
    before reading any config: a plugin's module may import the server itself)."""
    refs = [ep.value for ep in entry_points(group="modelserve.kinds")]
    refs += [r.strip() for r in os.environ.get("MODELSERVE_KINDS", "").split(",") if r.strip()]
    for ref in refs:
        module, _, attr = ref.partition(":")
        kind = getattr(importlib.import_module(module), attr)
        if not isinstance(kind, ModelKind):
            raise TypeError(f"{ref} is not a ModelKind")
        KINDS.setdefault(kind.name, kind)


def kind_of_runtime(runtime: str) -> ModelKind[Any] | None:
    """The kind that serves a `runtime:` name (each runtime belongs to one kind)."""
    return next((k for k in KINDS.values() if runtime in k.runtimes), None)


__all__ = ["KINDS", "MetricDef", "ModelFront", "ModelKind", "kind_of_runtime", "load_plugins"]
