"""Pulling through the server: POST /admin/models/pull and Ollama's POST /api/pull of a source
stream progress from a local Hugging Face hub; the pulled SmolLM2 then loads with
POST /admin/models/load (the store is an allowed model root by default) and answers a chat."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, ServerProcess, cli_server, server_process
from tests.fixtures.hub import FakeHub, HubFile, fake_hub
from tests.helpers import assert_ollama_error, assert_openai_error, store_env

ADMIN, USER = "admin-key-for-pulls", "user-key-for-pulls"
SMOL_REPO, SMOL_FILE = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_REPO, TINY_FILE = "org/tiny-GGUF", "tiny.Q4_K_M.gguf"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    from modelserve.sources import PackageSource

    with fake_hub() as hub:
        hub.add(SMOL_REPO, {SMOL_FILE: HubFile(PackageSource(**SMOLLM2).resolve())})
        hub.add(TINY_REPO, {TINY_FILE: HubFile(os.urandom(2_000_000))})
        yield hub


@pytest.fixture(scope="module")
def server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODEL_CACHE", str(cache))
        env.setenv("HF_ENDPOINT", hub.url)
        env.setenv("HF_HOME", str(cache / "hf-home"))
        env.delenv("HF_TOKEN", raising=False)
        config = {"server": {"security": {"api_keys": [{"key": ADMIN, "scope": "admin"},
                                                        {"key": USER}]}},
                  "models": [{"name": "smol", "source": SMOLLM2, "preload": False,
                              "options": {"context_size": 512, "parallel": 1}}]}
        with server_process(tmp_path_factory.mktemp("pull-server"), config) as process:
            yield process


def _http(server: ServerProcess, key: str = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120,
                        headers={"Authorization": f"Bearer {key}"})


def _lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line]


def test_admin_pull_streams_progress_then_the_model_loads_and_chats(
        server: ServerProcess, hub: FakeHub) -> None:
    with _http(server) as http:
        with http.stream("POST", "/admin/models/pull",
                         json={"source": f"hf:{SMOL_REPO}:Q4_1"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = _lines(response)
        sha = hub.sha256(SMOL_REPO, SMOL_FILE)
        assert lines[0] == {"status": "pulling manifest"}
        counts = [line for line in lines if "completed" in line]
        assert counts and all(line["digest"] == f"sha256:{sha}" for line in counts)
        assert counts[-1]["completed"] == counts[-1]["total"] == 98_362_432
        assert {"status": "verifying sha256 digest", "digest": f"sha256:{sha}"} in lines
        final = lines[-1]
        assert final["status"] == "success" and final["path"].endswith(SMOL_FILE)
        assert len(hub.downloads(SMOL_FILE)) == 1

        loaded = http.post("/admin/models/load", params={"wait": "true"},
                           json={"name": "pulled-smol", "source": final["path"],
                                 "options": {"context_size": 512, "parallel": 1}})
        assert loaded.status_code == 200, loaded.text
        chat = http.post("/v1/chat/completions", json={
            "model": "pulled-smol", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"].strip()

        # Pulled already: the answer is at once, from the store.
        again = _lines(http.post("/admin/models/pull", json={"source": f"hf:{SMOL_REPO}:Q4_1"}))
        assert again[-1] == final and len(hub.downloads(SMOL_FILE)) == 1


def test_admin_pull_errors_and_scope(server: ServerProcess, hub: FakeHub) -> None:
    with _http(server) as http:
        assert_openai_error(http.post("/admin/models/pull", json={"source": "gguf:x"}), 400,
                            param="source")
        assert_openai_error(http.post("/admin/models/pull", json={"source": "hf:org/nope"}),
                            404)
        assert_openai_error(http.post("/admin/models/pull", json={
            "source": f"hf:{TINY_REPO}", "sha256": "0" * 64}), 400, param="source")
        url = f"{hub.url}/{TINY_REPO}/resolve/main/{TINY_FILE}"
        # A checksum found wrong after the bytes came: the stream's last line says so.
        with http.stream("POST", "/admin/models/pull",
                         json={"source": url, "sha256": "0" * 64}) as response:
            assert response.status_code == 200
            last = _lines(response)[-1]
        assert last["status"] == "error" and "checksum mismatch" in last["error"]["message"]
    with _http(server, USER) as user:
        refused = user.post("/admin/models/pull", json={"source": f"hf:{TINY_REPO}"})
        assert_openai_error(refused, 403)
        pulled = user.post("/api/pull", json={"model": f"hf:{TINY_REPO}"})
        assert pulled.status_code == 403


def test_ollama_pull_of_a_source(server: ServerProcess, hub: FakeHub) -> None:
    sha = hub.sha256(TINY_REPO, TINY_FILE)
    before = len(hub.downloads(TINY_FILE))
    with _http(server) as http:
        lines = _lines(http.post("/api/pull", json={"model": f"hf.co/{TINY_REPO}:Q4_K_M"}))
        assert lines[0] == {"status": "pulling manifest"}
        layer = [line for line in lines if line["status"] == f"pulling {sha[:12]}"]
        assert layer and layer[-1] == {"status": f"pulling {sha[:12]}",
                                       "digest": f"sha256:{sha}", "total": 2_000_000,
                                       "completed": 2_000_000}
        assert {"status": "verifying sha256 digest", "digest": f"sha256:{sha}"} in lines
        assert lines[-1] == {"status": "success"}
        single = http.post("/api/pull", json={"model": f"hf:{TINY_REPO}:{TINY_FILE}",
                                              "stream": False})
        assert single.status_code == 200 and single.json() == {"status": "success"}
        assert len(hub.downloads(TINY_FILE)) == before + 1  # the second pull found it
        # Configured names succeed at once; other names are Ollama's 404, as before.
        assert _lines(http.post("/api/pull", json={"model": "smol"})) == [{"status": "success"}]
        assert_ollama_error(http.post("/api/pull", json={"model": "llama3.2"}), 404)
        assert_ollama_error(http.post("/api/pull", json={"model": "hf:org/nope"}), 404,
                            "org/nope")



def test_serve_model_pulls_a_hub_source_on_first_use(
        hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`modelserve serve --model hf:ORG/REPO:QUANT`: pulled into the store, detected as a
    chat model and served under the name given; a second start finds it with no network."""
    cache = tmp_path_factory.mktemp("serve-cache")
    env = store_env(cache, hub.url)
    before = len(hub.downloads(SMOL_FILE))
    args = ["--model", f"hf:{SMOL_REPO}:Q4_1", "--name", "smol-pulled", "--ctx", "512",
            "--parallel", "1"]
    with cli_server(args, env=env) as process, \
            httpx.Client(base_url=process.url, timeout=120) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["smol-pulled"]
        answer = http.post("/v1/chat/completions", json={
            "model": "smol-pulled", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hi."}]})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0
    assert len(hub.downloads(SMOL_FILE)) == before + 1
    with cli_server(args, env={**env, "HF_HUB_OFFLINE": "1"}) as process:
        assert httpx.get(f"{process.url}/v1/models").json()["data"][0]["id"] == "smol-pulled"
    assert len(hub.downloads(SMOL_FILE)) == before + 1
