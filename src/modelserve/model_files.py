"""Facts about a model's files: identity (revision), size on disk, allowed locations."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from pathlib import Path

_SAMPLE = 1 << 20  # bytes hashed from each end of a file


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in _files(path))


def revision(path: Path) -> str:
    """A short identity of the model's content: reloading a different file changes it.

    Hashes each file's name, size and first and last MiB rather than every byte, so it is
    instant on multi-GB GGUFs yet the same on every replica that has the same files.
    """
    digest = hashlib.sha256()
    for file in _files(path):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if file != path else file.name}:{size}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                handle.seek(size - _SAMPLE)
                digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()[:16]


def under_roots(path: Path, roots: list[str]) -> bool:
    """True if `path` (symlinks resolved) lies inside one of `roots`."""
    real = path.resolve()
    return any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots)


def release_freed_memory() -> None:
    """Ask glibc to hand freed heap pages back to the OS, so unloading shows in RSS."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do
