"""The local model store: what `modelserve pull` fetched, one entry per pulled model.

Layout under the root (`MODEL_CACHE`, else `~/.cache/modelserve`):

    models/<name>/manifest.json   the sources that name it, sha256, size, pulled_at
    models/<name>/<file or dir>   the model itself, under its own file name
    models/.partial/              downloads in progress (resumable) and entries being staged

An entry appears whole or not at all: it is built in `.partial/` and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelserve.model_files import disk_bytes

MANIFEST = "manifest.json"
PARTIAL_DIR = ".partial"
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def store_root() -> Path:
    """Where the store lives: `MODEL_CACHE` (as `make models` uses), else ~/.cache/modelserve."""
    return Path(os.environ.get("MODEL_CACHE") or "~/.cache/modelserve").expanduser()


def models_dir(root: Path | None = None) -> Path:
    """The directory that holds the pulled models (an allowed model root by default)."""
    return (root or store_root()) / "models"


def entry_name(hint: str) -> str:
    """A name people can type (`modelserve rm NAME`) and a directory can carry."""
    name = _UNSAFE.sub("-", hint.lower()).strip(".-")
    return name or "model"


@dataclass(frozen=True)
class StoreEntry:
    name: str
    path: Path
    size_bytes: int
    source: str
    sha256: str | None
    pulled_at: float
    sources: tuple[str, ...] = field(default=())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
                "source": self.source, "sha256": self.sha256, "pulled_at": self.pulled_at}


class ModelStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else store_root()
        self.models = models_dir(self.root)
        self.partial = self.models / PARTIAL_DIR

    def partial_path(self, key: str) -> Path:
        """A download's resumable file: the same key finds the same bytes next time."""
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{entry_name(key)}.partial"

    def entries(self) -> list[StoreEntry]:
        if not self.models.is_dir():
            return []
        found = (self._read(d) for d in sorted(self.models.iterdir())
                 if d.is_dir() and d.name != PARTIAL_DIR)
        return [e for e in found if e is not None]

    def entry(self, source_or_name: str) -> StoreEntry | None:
        for entry in self.entries():
            if source_or_name == entry.name or source_or_name in entry.sources:
                return entry
        return None

    def find(self, source_or_name: str) -> Path | None:
        entry = self.entry(source_or_name)
        return entry.path if entry is not None else None

    def remove(self, name: str) -> StoreEntry:
        """Deletes an entry by name (or by a source that names it); KeyError if none."""
        entry = self.entry(name)
        if entry is None:
            raise KeyError(name)
        # Renamed away first, so a half-deleted entry is never listed.
        doomed = self.partial / f"{entry.name}.removing-{os.getpid()}"
        self.partial.mkdir(parents=True, exist_ok=True)
        os.replace(entry.path.parent, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return entry

    def add_source(self, entry: StoreEntry, source: str) -> None:
        """Another source string that means the same entry (`hf:org/repo` and its file)."""
        if source in entry.sources:
            return
        manifest = entry.path.parent / MANIFEST
        data = json.loads(manifest.read_text())
        data["sources"] = [*entry.sources, source]
        _write_json(manifest, data)

    def place(self, staged: Path, *, name_hint: str, payload_name: str, sources: list[str],
              sha256: str | None) -> Path:
        """Moves a verified download (file or directory) into the store as a new entry."""
        name = self._free_name(entry_name(name_hint))
        staging = self.partial / f"{name}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        os.replace(staged, staging / payload_name)
        _write_json(staging / MANIFEST, {
            "payload": payload_name, "source": sources[0], "sources": sources,
            "sha256": sha256, "size_bytes": disk_bytes(staging / payload_name),
            "pulled_at": time.time()})
        os.replace(staging, self.models / name)
        return self.models / name / payload_name

    def _free_name(self, name: str) -> str:
        candidate, n = name, 1
        while (self.models / candidate).exists():
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def _read(self, directory: Path) -> StoreEntry | None:
        try:
            data = json.loads((directory / MANIFEST).read_text())
            path = directory / str(data["payload"])
            sources = tuple(str(s) for s in data.get("sources") or [data["source"]])
            return StoreEntry(name=directory.name, path=path,
                              size_bytes=int(data["size_bytes"]), source=sources[0],
                              sha256=data.get("sha256"), pulled_at=float(data["pulled_at"]),
                              sources=sources)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not an entry (or a damaged one): not listed, never served


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)

