"""Worker processes: a crash, a kill or a bad load ends only its own model (issue 13)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve
from tests.helpers import NO_EOS, assert_openai_error, metric

USER = [{"role": "user", "content": "Count from one to one hundred."}]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-models")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, roots: Path, gemma_gguf: Path,
         minilm_onnx: dict[str, Path]) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("workers"), {
        "server": {"lifecycle": {"model_roots": [str(roots), str(gemma_gguf.parent)],
                                 "restart_backoff_seconds": 2}},
        "models": [
            {"name": "chat", "source": SMOLLM2, "preload": True,
             "options": {"context_size": 4096, "parallel": 4, "batch_size": 256}},
            {"name": "embed", "kind": "embeddings", "source": str(minilm_onnx["fp32"]),
             "preload": True},
        ],
    }) as server:
        yield server


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=120) as client:
        yield client


def models(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in http.get("/admin/models").json()["data"]}


def wait_state(http: httpx.Client, name: str, *states: str, timeout: float = 120
               ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = models(http)[name]
        if model["state"] in states:
            return model
        time.sleep(0.02)
    raise AssertionError(f"{name} never reached {states}: {models(http)[name]}")


def embed(http: httpx.Client) -> httpx.Response:
    return http.post("/v1/embeddings", json={"model": "embed", "input": "still serving"})


def stream_events(url: str, started: threading.Event, events: list[str]) -> None:
    body = {"model": "chat", "messages": USER, "max_tokens": 3000, "stream": True,
            "logit_bias": NO_EOS}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) > 2:
                    started.set()


def test_kill_9_fails_only_that_models_streams_and_it_restarts(live: LiveServer,
                                                               http: httpx.Client) -> None:
    pid = models(http)["chat"]["pid"]
    assert pid and pid != os.getpid()
    runs = [(threading.Event(), []) for _ in range(4)]
    threads = [threading.Thread(target=stream_events, args=(live.url, started, events))
               for started, events in runs]
    for t in threads:
        t.start()
    for started, _ in runs:
        assert started.wait(60)
    os.kill(pid, signal.SIGKILL)
    embedded = embed(http)  # the embeddings worker never notices
    for t in threads:
        t.join(timeout=60)
    assert embedded.status_code == 200
    for _, events in runs:
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "model_unavailable" and "SIGKILL" in error["message"]
    failed = models(http)["chat"]
    assert failed["state"] == "restarting" and "killed by SIGKILL" in failed["error"]
    ready = wait_state(http, "chat", "ready")
    assert ready["restarts"] == 1 and ready["pid"] != pid
    again = http.post("/v1/chat/completions", json={"model": "chat", "messages": USER,
                                                    "max_tokens": 4})
    assert again.status_code == 200
    restarts = metric(http, "modelserve_model_restarts_total",
                      model="chat")
    assert restarts == 1


def test_worker_crashing_during_load_is_failed_with_reason(http: httpx.Client,
                                                           gemma_gguf: Path) -> None:
    assert http.post("/admin/models/load", json={"name": "crashy", "kind": "chat",
                                                  "source": str(gemma_gguf)}).status_code == 202
    deadline = time.monotonic() + 30
    worker = None
    while worker is None and time.monotonic() < deadline:
        worker = next((p for p in multiprocessing.active_children()
                       if p.name == "modelserve-worker-crashy"), None)
        time.sleep(0.005)
    assert worker is not None and worker.pid is not None
    os.kill(worker.pid, signal.SIGSEGV)  # as a native fault in llama.cpp would
    failed = wait_state(http, "crashy", "failed")
    assert "died while loading: killed by SIGSEGV" in failed["error"]
    assert embed(http).status_code == 200
    assert http.post("/v1/chat/completions", json={"model": "chat", "messages": USER,
                                                    "max_tokens": 2}).status_code == 200


def test_corrupt_gguf_is_failed_with_the_loaders_reason(http: httpx.Client,
                                                        roots: Path) -> None:
    corrupt = roots / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    loaded = http.post("/admin/models/load", params={"wait": "true"},
                       json={"name": "corrupt", "kind": "chat", "source": str(corrupt)})
    assert_openai_error(loaded, 422, code="model_load_failed")
    assert "could not load" in loaded.json()["error"]["message"]
    assert models(http)["corrupt"]["state"] == "failed"
    assert embed(http).status_code == 200


def test_a_load_bigger_than_the_hosts_memory_is_refused_before_it_starts(
        http: httpx.Client, roots: Path) -> None:
    huge = roots / "huge.gguf"
    with huge.open("wb") as f:  # sparse: a terabyte that takes no disk
        f.truncate(2**40)
    before = {p.pid for p in multiprocessing.active_children()}
    loaded = http.post("/admin/models/load", params={"wait": "true"},
                       json={"name": "huge", "kind": "chat", "source": str(huge)})
    assert_openai_error(loaded, 422, code="model_load_failed")
    assert "not enough memory to load it" in loaded.json()["error"]["message"]
    assert models(http)["huge"]["state"] == "failed"
    assert {p.pid for p in multiprocessing.active_children()} <= before  # no worker started
    assert embed(http).status_code == 200


def test_unload_stops_the_worker_and_returns_all_its_memory(http: httpx.Client,
                                                            gemma_gguf: Path) -> None:
    loaded = http.post("/admin/models/load", params={"wait": "true"},
                       json={"name": "gemma", "kind": "chat", "source": str(gemma_gguf),
                             "options": {"threads": 1, "context_size": 512}})
    assert loaded.json()["state"] == "ready"
    rss, pid = loaded.json()["rss_bytes"], loaded.json()["pid"]
    assert rss > 100 * 2**20, f"the worker holds {rss / 2**20:.0f} MiB"
    assert metric(http, "modelserve_model_memory_bytes",
                  model="gemma") > 100 * 2**20
    gone = http.post("/admin/models/unload", params={"wait": "true"}, json={"name": "gemma"})
    assert gone.json()["state"] == "unloaded" and gone.json()["memory_bytes"] == 0
    assert not Path(f"/proc/{pid}").exists()  # the process, and every byte it held, is gone


def test_a_context_too_big_for_the_host_is_refused_before_a_worker_starts(
        http: httpx.Client) -> None:
    """Admission counts the KV cache (parallel x context_size) from the GGUF's metadata, so
    the load is refused up front instead of OOM-killed during its warm-up."""
    before = {p.pid for p in multiprocessing.active_children()}
    loaded = http.post("/admin/models/load", params={"wait": "true"},
                       json={"name": "huge-context", "kind": "chat", "source": SMOLLM2,
                             "options": {"parallel": 256, "context_size": 2**20}})
    err = assert_openai_error(loaded, 422, code="model_load_failed")
    assert "not enough memory to load it: it needs an estimated" in err["message"]
    assert {p.pid for p in multiprocessing.active_children()} <= before
