"""`hf:ORG/REPO[:QUANT|:FILE]`: one GGUF out of a repo, or a whole non-GGUF repo (a
sentence-transformers model) as a directory.

`huggingface_hub` reads the repo (so `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` apply) and
gives each file's URL, auth headers and digest (the LFS sha256, or the git blob id of a small
file); the bytes come through our own resumable download, into the store.
"""

from __future__ import annotations

import os
import re
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import httpx
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo, RepoSibling
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from modelserve.model_store import ModelStore
from modelserve.pull.download import RemoteFile, client, download, verify
from modelserve.pull.progress import ProgressCallback, PullError, PullProgress
from modelserve.pull.sources import HfSource
from modelserve.pull.steps import bytes_to, fetch_file

# Formats a snapshot leaves out: other frameworks' copies of the same weights.
SKIPPED = ("*.h5", "*.ot", "*.msgpack", "*.tflite", "onnx/*", "openvino/*", "coreml/*")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def pull(src: HfSource, given: str, store: ModelStore, report: ProgressCallback) -> Path:
    report(PullProgress("pulling manifest"))
    info = _model_info(src)
    files = _chosen(src, info.siblings or [])
    revision = info.sha or src.revision
    with client() as http:
        if files is None:
            return _snapshot(http, src, info, revision, given, store, report)
        sibling = files
        remote = _remote(src.repo, sibling, revision)
        canonical = f"hf:{src.repo}:{sibling.rfilename}"
        if (entry := store.entry(canonical)) is not None and entry.path.exists():
            store.add_source(entry, given)  # `hf:org/repo` and its `:FILE` are one entry
            return entry.path
        partial = store.partial_path(remote.sha256 or f"hf-{src.repo}-{sibling.rfilename}")
        sha256 = fetch_file(http, remote, partial, sibling.rfilename, report)
    name = PurePosixPath(sibling.rfilename).name
    report(PullProgress("writing manifest"))
    return store.place(partial, name_hint=name.removesuffix(".gguf"), payload_name=name,
                       sources=_unique([given, canonical]), sha256=sha256)


def _model_info(src: HfSource) -> ModelInfo:
    try:
        return HfApi().model_info(src.repo, revision=src.revision, files_metadata=True)
    except OfflineModeIsEnabled:
        raise PullError(f"hf:{src.repo} is not in the store, and HF_HUB_OFFLINE is set",
                        status=404) from None
    except GatedRepoError:
        raise PullError(f"hf:{src.repo} is gated: accept its terms on the hub and set "
                        "HF_TOKEN", status=403) from None
    except RepositoryNotFoundError:
        raise PullError(f"no Hugging Face repo {src.repo} (a private one needs HF_TOKEN)",
                        status=404) from None
    except RevisionNotFoundError:
        raise PullError(f"hf:{src.repo} has no revision {src.revision!r}", status=404) from None
    except HfHubHTTPError as exc:
        raise PullError(f"the Hugging Face hub failed: {_first_line(exc)}") from None
    except httpx.HTTPError as exc:
        raise PullError(f"cannot reach the Hugging Face hub ({_first_line(exc)})") from None


def _chosen(src: HfSource, siblings: list[RepoSibling]) -> RepoSibling | None:
    """The one GGUF the source means, or None for a repo with no GGUF (a snapshot)."""
    ggufs = [s for s in siblings if s.rfilename.lower().endswith(".gguf")]
    models = [s for s in ggufs if "mmproj" not in s.rfilename.lower()]
    listing = ", ".join(s.rfilename for s in ggufs) or "none"
    if src.selector is None:
        if not ggufs:
            return None
        if len(models) == 1:
            return models[0]
        raise PullError(f"hf:{src.repo} has several GGUF files; name one, as hf:{src.repo}:"
                        f"QUANT (e.g. {_tags(models)}) or hf:{src.repo}:FILE. Files: {listing}",
                        status=400)
    if src.is_file_name:
        named = [s for s in siblings if src.selector in (s.rfilename,
                                                          PurePosixPath(s.rfilename).name)]
        if not named:
            raise PullError(f"hf:{src.repo} has no file {src.selector!r}; GGUF files: "
                            f"{listing}", status=404)
        return named[0]
    tag = re.compile(rf"(?<![A-Za-z0-9]){re.escape(src.selector)}(?![A-Za-z0-9_])", re.I)
    matched = [s for s in models if tag.search(PurePosixPath(s.rfilename).name)]
    if len(matched) == 1:
        return matched[0]
    if not matched:
        raise PullError(f"hf:{src.repo} has no GGUF tagged {src.selector!r}; GGUF files: "
                        f"{listing}", status=404)
    raise PullError(f"{src.selector!r} matches several files of hf:{src.repo}: "
                    f"{', '.join(s.rfilename for s in matched)}; name one as hf:{src.repo}:FILE",
                    status=400)


def _tags(models: list[RepoSibling]) -> str:
    found = [m.group(0) for s in models
             if (m := re.search(r"(?i)(?:I?Q\d+(?:_[A-Z0-9]+)*|F16|BF16|F32)", s.rfilename))]
    return ", ".join(dict.fromkeys(found)) or "Q4_K_M"


def _remote(repo: str, sibling: RepoSibling, revision: str) -> RemoteFile:
    url = hf_hub_url(repo, sibling.rfilename, revision=revision)
    headers = build_hf_headers()
    if sibling.lfs is not None:
        return RemoteFile(url, size=sibling.lfs.size, sha256=sibling.lfs.sha256,
                          headers=headers)
    if sibling.blob_id is not None:
        return RemoteFile(url, size=sibling.size, git_sha1=sibling.blob_id, headers=headers)
    return _from_headers(url, headers)


def _from_headers(url: str, headers: dict[str, str]) -> RemoteFile:
    """No file metadata in the listing: the file's own headers carry its digest
    (`X-Linked-Etag` is the LFS sha256; a plain `ETag` is the git blob id)."""
    try:
        meta = get_hf_file_metadata(url, headers=headers)
    except EntryNotFoundError:
        raise PullError(f"not found on the hub: {url}", status=404) from None
    except (HfHubHTTPError, httpx.HTTPError) as exc:
        raise PullError(f"the Hugging Face hub failed: {_first_line(exc)}") from None
    etag = (meta.etag or "").lower()
    return RemoteFile(url, size=meta.size, headers=headers,
                      sha256=etag if _SHA256.match(etag) else None,
                      git_sha1=etag if _SHA1.match(etag) else None)


def _snapshot(http: httpx.Client, src: HfSource, info: ModelInfo, revision: str, given: str,
              store: ModelStore, report: ProgressCallback) -> Path:
    """Every file of a repo with no GGUF, into one directory (a sentence-transformers model)."""
    siblings = _snapshot_files(info.siblings or [])
    remotes = [_remote(src.repo, s, revision) for s in siblings]
    overall = sum(r.size or 0 for r in remotes)
    staging = store.partial / f"hf-{src.repo.replace('/', '--')}-{revision}.snapshot"
    base = 0
    for sibling, remote in zip(siblings, remotes, strict=True):
        target = staging / sibling.rfilename
        if not (target.exists() and target.stat().st_size == remote.size):
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            status = f"pulling {sibling.rfilename}"
            download(http, remote, partial, bytes_to(report, status, None, base, overall))
            verify(remote, partial)
            os.replace(partial, target)
        base += remote.size or 0
        report(PullProgress(f"pulling {sibling.rfilename}", total=overall, completed=base))
    report(PullProgress("writing manifest"))
    name = src.repo.rsplit("/", 1)[1]
    return store.place(staging, name_hint=name, payload_name=name,
                       sources=_unique([given, f"hf:{src.repo}"]), sha256=None)


def _snapshot_files(siblings: list[RepoSibling]) -> list[RepoSibling]:
    kept = [s for s in siblings if not any(fnmatch(s.rfilename, p) for p in SKIPPED)
            and not s.rfilename.startswith(".")]
    if any(s.rfilename.endswith(".safetensors") for s in kept):
        kept = [s for s in kept if not s.rfilename.endswith(".bin")]  # the same weights
    return kept


def _unique(sources: list[str]) -> list[str]:
    return list(dict.fromkeys(sources))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
