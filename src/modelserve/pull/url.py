"""`https://...` (or `http://`): one file, its sha256 checked when the source gives one
(`#sha256=HEX`, or `--sha256`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from modelserve.model_store import ModelStore
from modelserve.pull.download import RemoteFile, client
from modelserve.pull.progress import ProgressCallback, PullProgress
from modelserve.pull.sources import UrlSource
from modelserve.pull.steps import fetch_file


def pull(src: UrlSource, given: str, store: ModelStore, report: ProgressCallback) -> Path:
    report(PullProgress("pulling manifest"))
    remote = RemoteFile(src.url, sha256=src.sha256)
    # One partial per URL, so a pull cut short resumes where it stopped.
    key = src.sha256 or "url-" + hashlib.sha256(src.url.encode()).hexdigest()[:24]
    partial = store.partial_path(key)
    with client() as http:
        sha256 = fetch_file(http, remote, partial, src.file_name, report)
    report(PullProgress("writing manifest"))
    name = src.file_name
    return store.place(partial, name_hint=name.removesuffix(".gguf"), payload_name=name,
                       sources=list(dict.fromkeys([given, src.url])), sha256=sha256)
