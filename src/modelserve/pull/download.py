"""One file over HTTP into a `.partial` file: streamed, resumed with `Range` after a cut,
checked against its size and sha256 (a mismatch deletes it: those bytes are never reused)."""

from __future__ import annotations

import errno
import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from modelserve.pull.progress import PullError

CHUNK = 1 << 20
ATTEMPTS = 3  # a cut connection is resumed this many times before the pull gives up
TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# Bytes so far and the total (None when the server does not say).
ByteReport = Callable[[int, int | None], None]


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int | None = None
    sha256: str | None = None  # hex
    git_sha1: str | None = None  # a git blob id: the hub's only digest for small files
    headers: dict[str, str] = field(default_factory=dict)


def client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True)


def download(http: httpx.Client, remote: RemoteFile, partial: Path, report: ByteReport) -> None:
    """Fills `partial` with the file, resuming what is there; `verify` checks it after."""
    for attempt in range(ATTEMPTS):
        try:
            _fill(http, remote, partial, report)
            break
        except httpx.TransportError as exc:
            if attempt == ATTEMPTS - 1:
                raise PullError(f"connection to {_host(remote.url)} failed ({_reason(exc)}); "
                                "run the pull again to resume it") from None
            time.sleep(0.5 * (attempt + 1))


def verify(remote: RemoteFile, partial: Path) -> str:
    """The file's sha256, once its size and digests check out; a file that fails is deleted."""
    size = partial.stat().st_size
    if remote.size is not None and size != remote.size:
        partial.unlink(missing_ok=True)
        raise PullError(f"{remote.url} ended at {size} bytes, expected {remote.size}; the "
                        "partial download was deleted")
    actual = file_sha256(partial)
    if remote.sha256 is not None and actual != remote.sha256:
        partial.unlink(missing_ok=True)
        raise PullError(f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, "
                        f"got {actual}; the download was deleted")
    if remote.git_sha1 is not None and git_blob_sha1(partial) != remote.git_sha1:
        partial.unlink(missing_ok=True)
        raise PullError(f"checksum mismatch for {remote.url}: its git blob id is not "
                        f"{remote.git_sha1}; the download was deleted")
    return actual


def _fill(http: httpx.Client, remote: RemoteFile, partial: Path, report: ByteReport) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    if remote.size is not None and have > remote.size:
        have = 0  # not a prefix of this file
    if remote.size is not None and have == remote.size:
        report(have, remote.size)
        return
    headers = {**remote.headers, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with http.stream("GET", remote.url, headers=headers) as response:
        if response.status_code == 416 and have:
            return  # nothing past what we have: the size and digest checks decide
        _check_status(response, remote.url)
        if response.status_code != 206 or not _resumes_at(response, have):
            have = 0  # the server sent the whole file: start over
        total = _total(response, have, remote.size)
        _check_space(partial.parent, (total or 0) - have)
        with partial.open("ab" if have else "wb") as out:
            done = have
            report(done, total)
            try:
                for block in response.iter_bytes():  # as it arrives: a cut keeps it all
                    out.write(block)
                    done += len(block)
                    report(done, total)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise PullError(f"no space left on device in {partial.parent} "
                                    f"({done} of {total or '?'} bytes written; free some "
                                    "space and pull again to resume)", status=507) from None
                raise


def _check_status(response: httpx.Response, url: str) -> None:
    code = response.status_code
    if code < 400:
        return
    if code == 404:
        raise PullError(f"not found: {url} (HTTP 404)", status=404)
    if code in (401, 403):
        raise PullError(f"access denied to {url} (HTTP {code}); a gated or private "
                        "repo needs HF_TOKEN", status=403)
    raise PullError(f"{_host(url)} answered HTTP {code} for {url}")


def _resumes_at(response: httpx.Response, have: int) -> bool:
    content_range = str(response.headers.get("Content-Range", ""))  # bytes START-END/TOTAL
    return content_range.startswith(f"bytes {have}-")


def _total(response: httpx.Response, have: int, expected: int | None) -> int | None:
    if expected is not None:
        return expected
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return int(length) + (have if response.status_code == 206 else 0)
    return None


def _check_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise PullError(f"no space left on device: {needed} more bytes are needed in "
                        f"{directory}, {free} are free", status=507)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _host(url: str) -> str:
    return httpx.URL(url).host or url


def _reason(exc: httpx.TransportError) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
