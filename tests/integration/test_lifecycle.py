"""Runtime model management through /admin: load while serving, unload frees memory,
LRU eviction, keep-alive, pinned models, and bad admin input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MINILM, SMOLLM2, LiveServer, serve
from tests.helpers import NO_EOS, assert_openai_error

USER = [{"role": "user", "content": "Name three colours."}]
TINY = {"context_size": 256, "parallel": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-root")


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, roots: Path,
        gemma_gguf: Path) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("ops"), {
        "server": {"lifecycle": {"model_roots": [str(roots), str(gemma_gguf.parent)],
                                 "load_wait_seconds": 0, "lazy_load": False,
                                 "unload_grace_seconds": 5}},
        "models": [
            {"name": "chat", "source": SMOLLM2, "pinned": True,
             "options": {"context_size": 512, "parallel": 4, "batch_size": 256}},
            {"name": "embed", "kind": "embeddings", "runtime": "sentence-transformers",
             "source": MINILM},
        ],
    }) as live:
        yield live


@pytest.fixture()
def admin(ops: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ops.url, timeout=120) as c:
        yield c


def states(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in http.get("/admin/models").json()["data"]}


def chat(http: httpx.Client, model: str, **extra: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={
        "model": model, "messages": USER, "max_tokens": 8, "temperature": 0, **extra})


def test_admin_lists_models_with_state_and_memory(admin: httpx.Client) -> None:
    models = states(admin)
    assert set(models) == {"chat", "embed"}
    for m in models.values():
        assert m["state"] == "ready" and m["memory_bytes"] > 1_000_000
        assert m["revision"] and m["loaded_at"] and m["in_flight"] == 0
    assert models["chat"]["pinned"] and models["embed"]["kind"] == "embeddings"
    emb = admin.post("/v1/embeddings", json={"model": "embed", "input": "hello"})
    assert emb.status_code == 200 and chat(admin, "chat").status_code == 200


def test_load_second_model_while_streaming_then_unload_frees_memory(
        admin: httpx.Client, ops: LiveServer, gemma_gguf: Path) -> None:
    body = {"model": "chat", "messages": USER, "max_tokens": 48, "temperature": 0,
            "logit_bias": NO_EOS}
    solo = admin.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    texts: list[str] = []

    def stream() -> None:
        with httpx.Client(base_url=ops.url, timeout=120) as c, \
                c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            assert r.status_code == 200
            import json
            text = ""
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
            texts.append(text)

    streams = [threading.Thread(target=stream) for _ in range(4)]
    for t in streams:
        t.start()
    spec = {"name": "gemma", "source": str(gemma_gguf),
            "options": {"context_size": 512, "parallel": 2}}
    started = admin.post("/admin/models/load", json=spec)
    assert started.status_code == 202 and started.json()["state"] == "loading"
    # While it loads, a request waits up to load_wait_seconds (0 here), then gets a 503.
    busy = chat(admin, "gemma")
    assert_openai_error(busy, 503, code="model_loading")
    assert busy.headers["retry-after"]
    deadline = time.monotonic() + 120
    while states(admin)["gemma"]["state"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert states(admin)["gemma"]["state"] == "ready"
    answer = chat(admin, "gemma", max_tokens=16)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0
    for t in streams:
        t.join(timeout=120)
    assert texts == [solo["content"]] * 4  # no stream was disturbed by the load

    # Gemma's memory is its worker's: measured, then gone with the process on unload.
    worker = states(admin)["gemma"]
    assert worker["rss_bytes"] > 100 * 1024 * 1024, \
        f"the worker's RSS is only {worker['rss_bytes'] / 2**20:.0f} MiB"
    gone = admin.post("/admin/models/unload", params={"wait": "true"}, json={"name": "gemma"})
    assert gone.status_code == 200 and gone.json()["state"] == "unloaded"
    assert not Path(f"/proc/{worker['pid']}").exists()
    assert_openai_error(chat(admin, "gemma"), 503, code="model_unavailable")
    assert chat(admin, "chat").status_code == 200


def test_unload_drains_requests_in_flight(admin: httpx.Client, ops: LiveServer) -> None:
    assert admin.post("/admin/models/load", params={"wait": "true"},
                      json={"name": "embed"}).status_code == 200
    long = {"model": "chat", "messages": USER, "max_tokens": 64, "temperature": 0,
            "logit_bias": NO_EOS}
    result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: result.append(
        httpx.post(f"{ops.url}/v1/chat/completions", json=long, timeout=120)))
    worker.start()
    deadline = time.monotonic() + 30
    while states(admin)["chat"]["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    unloading = admin.post("/admin/models/unload", json={"name": "chat"})
    assert unloading.status_code == 202 and unloading.json()["state"] == "unloading"
    assert_openai_error(chat(admin, "chat"), 503, code="model_unavailable")
    worker.join(timeout=120)
    assert result[0].status_code == 200  # the request in flight finished normally
    assert result[0].json()["usage"]["completion_tokens"] == 64
    while states(admin)["chat"]["state"] != "unloaded" and time.monotonic() < deadline:
        time.sleep(0.05)
    reloaded = admin.post("/admin/models/load", params={"wait": "true"}, json={"name": "chat"})
    assert reloaded.status_code == 200 and chat(admin, "chat").status_code == 200


def test_failed_reload_keeps_the_old_model_serving(admin: httpx.Client, roots: Path) -> None:
    bad = roots / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 4096)
    before = states(admin)["chat"]["revision"]
    resp = admin.post("/admin/models/load", params={"wait": "true"},
                      json={"name": "chat", "source": str(bad)})
    assert_openai_error(resp, 422, code="model_load_failed")
    assert admin.get("/health").status_code == 200
    after = states(admin)["chat"]
    assert after["state"] == "ready" and after["revision"] == before and after["error"]
    assert chat(admin, "chat").status_code == 200


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"name": "no-such-model"}, 404, "model"),
    ({"name": "x", "source": "/etc/passwd"}, 403, "source"),
    ({"name": "x", "source": "ROOT/../../../../../../../etc/hostname"}, 403, "source"),
    ({"name": "x", "source": "ROOT/missing.gguf"}, 400, "source"),
    ({"name": "x", "source": "ROOT", "options": {"mmproj": "/etc/hostname"}}, 403,
     "options.mmproj"),
    ({"name": "x", "source": "ROOT", "options": {"draft_model": "/etc/hostname"}}, 403,
     "options.draft_model"),
    ({"name": "x", "kind": "wizard", "source": "ROOT"}, 400, None),
    ({"name": "x", "source": "ROOT", "options": {"parallel": 0}}, 400, None),
    ({"name": "x", "source": "ROOT", "options": {"draft_max": 65}}, 400, None),
    ({"name": "x", "source": "ROOT", "options": {"draft_streams": 0}}, 400, None),
    ({"name": "x", "source": "ROOT", "surprise": 1}, 400, None),
    ({"name": "bad name!", "source": "ROOT"}, 400, "name"),
    ({"source": "ROOT"}, 400, "name"),
    ([1, 2], 400, "name"),
])
def test_bad_admin_load_input(admin: httpx.Client, roots: Path, body: Any, status: int,
                              param: str | None) -> None:
    if isinstance(body, dict):
        body = {k: v.replace("ROOT", str(roots)) if isinstance(v, str) else v
                for k, v in body.items()}
    resp = admin.post("/admin/models/load", json=body)
    assert_openai_error(resp, status, param=param)


def test_bad_admin_unload_and_body(admin: httpx.Client) -> None:
    assert_openai_error(admin.post("/admin/models/unload", json={"name": "nope"}), 404)
    assert_openai_error(admin.post("/admin/models/unload", json={}), 400, param="name")
    assert_openai_error(admin.post("/admin/models/load", content=b"{nope",
                                   headers={"content-type": "application/json"}), 400)
    assert admin.get("/ready").status_code == 200


# -- eviction and keep-alive, on a server of small SmolLM2 copies -----------------------------


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    def model(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "source": SMOLLM2, "options": TINY, "preload": False, **extra}

    with serve(tmp_path_factory.mktemp("policy"), {
        "server": {"lifecycle": {"max_loaded_models": 3}},
        "models": [model("p", pinned=True, preload=True, keep_alive_seconds=1),
                   model("a"), model("b"), model("c"), model("t", keep_alive_seconds=1)],
    }) as live:
        yield live


def test_lru_eviction_keeps_pinned_and_recent(policy: LiveServer) -> None:
    with httpx.Client(base_url=policy.url, timeout=120) as http:
        assert {m: s["state"] for m, s in states(http).items()} == {
            "p": "ready", "a": "unloaded", "b": "unloaded", "c": "unloaded", "t": "unloaded"}
        # /v1/models lists what a request may name: lazily loadable models too.
        assert {m["id"] for m in http.get("/v1/models").json()["data"]} == set("pabct")
        for name in ("a", "b", "a"):  # lazy loads; then `a` is the more recent
            assert chat(http, name).status_code == 200
        assert chat(http, "c").status_code == 200  # a 4th model: the LRU idle one goes
        now = {m: s["state"] for m, s in states(http).items()}
        assert now == {"p": "ready", "a": "ready", "b": "unloaded", "c": "ready",
                       "t": "unloaded"}


def test_keep_alive_unloads_idle_models_but_not_pinned(policy: LiveServer) -> None:
    with httpx.Client(base_url=policy.url, timeout=120) as http:
        assert chat(http, "t").status_code == 200
        assert states(http)["t"]["state"] == "ready"
        deadline = time.monotonic() + 10
        while states(http)["t"]["state"] != "unloaded" and time.monotonic() < deadline:
            time.sleep(0.2)
        now = states(http)
        assert now["t"]["state"] == "unloaded"
        assert now["p"]["state"] == "ready"  # idle past its keep-alive, but pinned
        assert http.get("/ready").status_code == 200
