"""What detection finds in a model file or directory, before the command line's flags and
name make it a ModelSpec."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Directory names that say nothing of the model inside (a package's `model/`, a voice's
# `data/`): the model is named after the directory holding them instead.
GENERIC_DIRS = frozenset({"model", "models", "data", "weights", "files", "snapshot"})
# Suffixes a model's name does without.
MODEL_SUFFIXES = frozenset({".gguf", ".onnx"})


@dataclass(frozen=True)
class Found:
    """A recognised model: its kind, the runtime (None: the kind's default), the path its
    spec's `source` names, and the runtime options the files themselves imply."""

    kind: str
    source: Path
    runtime: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def default_name(path: Path) -> str:
    """The file's or directory's name, lowercased, made a valid model name."""
    base = path.name
    if path.suffix.lower() in MODEL_SUFFIXES:
        base = path.stem
    elif path.name.lower() in GENERIC_DIRS and path.parent.name:
        base = path.parent.name
    name = re.sub(r"[^a-z0-9._:/-]+", "-", base.lower()).strip("-._")[:128]
    return name or "model"
