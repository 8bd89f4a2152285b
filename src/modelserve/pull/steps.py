"""What every source's pull shares: progress in Ollama's terms, one file downloaded under a
lock into its `.partial`, and a lock per source so two pulls never write the same bytes."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from modelserve.model_store import ModelStore, entry_name
from modelserve.pull.download import ByteReport, RemoteFile, download, verify
from modelserve.pull.progress import ProgressCallback, PullProgress


@contextmanager
def locked(store: ModelStore, key: str) -> Iterator[None]:
    """Holds the store's lock for `key` (another process pulling it waits, then finds it)."""
    store.partial.mkdir(parents=True, exist_ok=True)
    with (store.partial / f"{entry_name(key)}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def layer_status(remote: RemoteFile, label: str) -> tuple[str, str | None]:
    """Ollama's `pulling 8eeb52dfb3bb` (the digest's first 12 hex), or the file's name."""
    if remote.sha256:
        return f"pulling {remote.sha256[:12]}", f"sha256:{remote.sha256}"
    return f"pulling {label}", None


def bytes_to(report: ProgressCallback, status: str, digest: str | None, base: int = 0,
             overall: int | None = None) -> ByteReport:
    """A download's byte counts as PullProgress; `base`/`overall` sum several files."""
    def on_bytes(done: int, total: int | None) -> None:
        whole = overall if overall is not None else total
        report(PullProgress(status, total=whole, completed=base + done, digest=digest))
    return on_bytes


def fetch_file(http: httpx.Client, remote: RemoteFile, partial: Path, label: str,
               report: ProgressCallback) -> str:
    """Downloads one file into `partial`, reporting it as one layer; returns its sha256."""
    status, digest = layer_status(remote, label)
    download(http, remote, partial, bytes_to(report, status, digest))
    report(PullProgress("verifying sha256 digest", digest=digest))
    return verify(remote, partial)
