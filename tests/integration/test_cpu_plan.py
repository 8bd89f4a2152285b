"""The CPU plan follows the cores the server is given (issue 29): `taskset`, a cgroup CPU
quota, and the `cpu:` settings; a model unloaded or loaded re-plans the running workers.
Each test runs `modelserve serve` in a process of its own, confined as a user would."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve.cpu_plan import apportion
from tests.conftest import SMOLLM2, ServerProcess, cli_server
from tests.helpers import (
    cpu_quota_cgroup,
    in_cgroup,
    thread_affinities,
    thread_nices,
    wait_state,
)

CHAT = {"name": "chat", "source": SMOLLM2,
        "options": {"context_size": 256, "parallel": 2, "batch_size": 64,
                    "host_cache_mb": 0}}


def embeddings(onnx_dir: Path, **options: Any) -> dict[str, Any]:
    return {"name": "embed", "kind": "embeddings", "runtime": "onnx", "source": str(onnx_dir),
            "options": options}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[dict[str, Any], list[str]], ServerProcess]]:
    """start(config, prefix): `modelserve serve` on that config under that command prefix,
    logging at info into tmp_path/server.log; stopped at the test's end."""
    with contextlib.ExitStack() as stack:
        def run(config: dict[str, Any], prefix: list[str]) -> ServerProcess:
            path = tmp_path / "models.yaml"
            path.write_text(yaml.safe_dump(config))
            return stack.enter_context(cli_server(
                ["--config", str(path)], prefix=prefix, env={"MODELSERVE_LOG_LEVEL": "info"},
                log=tmp_path / "server.log"))

        yield run


def admin(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/admin/models", timeout=30).json()
    return body


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in body["data"]}


def answers(url: str) -> None:
    """Chat and embeddings both still answer."""
    chat = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "chat", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["completion_tokens"] >= 1
    emb = httpx.post(f"{url}/v1/embeddings", timeout=120,
                     json={"model": "embed", "input": ["one core", "two cores"]})
    assert emb.status_code == 200, emb.text
    assert [len(d["embedding"]) for d in emb.json()["data"]] == [384, 384]


def test_taskset_one_core(start: Any, minilm_onnx: dict[str, Path]) -> None:
    if 0 not in os.sched_getaffinity(0):
        pytest.skip("CPU 0 is not ours to pin to")
    server = start({"server": {"cpu": {"nice": {"embeddings": 5}}},
                    "models": [CHAT, embeddings(minilm_onnx["fp32"], threads=2)]},
                   ["taskset", "-c", "0"])
    body = admin(server.url)
    cpu = body["cpu"]
    assert (cpu["effective_cores"], cpu["detected_by"], cpu["affinity"]) == (1, "affinity", [0])
    assert (cpu["policy"], cpu["policy_in_effect"]) == ("shared", "shared")
    models = by_name(body)
    # unset `threads`: one per core in effect; an explicit one wins
    assert models["chat"]["cpu"] == {"threads": 1, "threads_from": "plan", "affinity": None,
                                     "nice": 0}
    assert models["embed"]["cpu"] == {"threads": 2, "threads_from": "option",
                                      "affinity": None, "nice": 5}
    for name in ("chat", "embed"):  # every thread of each worker, as the kernel has it
        assert thread_affinities(models[name]["pid"]) == {"0"}
    # `cpu.nice`: the embeddings worker's threads run at a lower priority, chat's do not
    assert thread_nices(models["embed"]["pid"]) == {5}
    assert thread_nices(models["chat"]["pid"]) == {os.getpriority(os.PRIO_PROCESS, 0)}
    answers(server.url)


def test_partitioned_workers_are_pinned_and_follow_an_unload_and_a_load(
        start: Any, minilm_onnx: dict[str, Path], tmp_path: Path) -> None:
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    # Two real cores; `cores: 3` and no API reserve let partitioning run on them.
    server = start({"server": {"cpu": {"policy": "partitioned", "cores": 3,
                                       "api_reserve_cores": 0}},
                    "models": [CHAT, embeddings(minilm_onnx["fp32"])]},
                   ["taskset", "-c", "0,1"])
    body = admin(server.url)
    assert (body["cpu"]["policy_in_effect"], body["cpu"]["detected_by"]) == \
        ("partitioned", "setting")
    models = by_name(body)
    assert models["chat"]["cpu"] == {"threads": 1, "threads_from": "plan", "affinity": [0],
                                     "nice": 0}
    assert models["embed"]["cpu"] == {"threads": 1, "threads_from": "plan", "affinity": [1],
                                      "nice": 10}  # the embeddings kind's own
    assert thread_affinities(models["chat"]["pid"]) == {"0"}
    assert thread_affinities(models["embed"]["pid"]) == {"1"}
    answers(server.url)

    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/admin/models/unload", json={"name": "embed"}).status_code == 202
        wait_state(http, "embed", "unloaded")
        chat = wait_state(http, "chat", "ready", check=lambda m: m["cpu"]["threads"] == 2)
        # llama.cpp's threads changed live, its worker moved onto both cores
        assert chat["cpu"] == {"threads": 2, "threads_from": "plan", "affinity": [0, 1],
                               "nice": 0}
        assert thread_affinities(chat["pid"]) == {"0-1"}
        reply = http.post("/v1/chat/completions", json={
            "model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
        assert reply.status_code == 200, reply.text

        assert http.post("/admin/models/load", json={"name": "embed"}).status_code == 202
        wait_state(http, "embed", "ready")
        models = {m["name"]: m for m in http.get("/admin/models").json()["data"]}
    assert models["chat"]["cpu"]["affinity"] == [0] and models["chat"]["cpu"]["threads"] == 1
    assert models["embed"]["cpu"]["affinity"] == [1]
    assert thread_affinities(models["chat"]["pid"]) == {"0"}
    answers(server.url)
    plans = [line for line in (tmp_path / "server.log").read_text().splitlines()
             if "cpu plan:" in line]
    # start-up, chat, embed, the unload, the load: one line each
    assert len(plans) == 5, plans
    assert plans[-1].endswith("chat: 1 thread on 0, embed: 1 thread on 1")


def test_a_cgroup_quota_of_half_a_core_is_detected(start: Any,
                                                   minilm_onnx: dict[str, Path]) -> None:
    with cpu_quota_cgroup(50000, 100000) as procs:
        server = start({"models": [embeddings(minilm_onnx["fp32"])]}, in_cgroup(procs))
        body = admin(server.url)
        cpu = body["cpu"]
        assert (cpu["effective_cores"], cpu["detected_by"], cpu["cgroup_quota_cores"]) == \
            (1, "cgroup quota", 0.5)
        assert by_name(body)["embed"]["cpu"]["threads"] == 1
        emb = httpx.post(f"{server.url}/v1/embeddings", timeout=120,
                         json={"model": "embed", "input": "half a core"})
        assert emb.status_code == 200, emb.text
        server.proc.terminate()
        server.proc.wait(timeout=45)


def test_busy_models_share_the_cores_and_an_idle_one_gives_them_back(
        start: Any, minilm_onnx: dict[str, Path]) -> None:
    """Shared policy: while chat streams and embeddings are asked for at once, the chat
    worker runs on its share of the cores (llama.cpp's count changes live); a second after
    the embeddings stop, it has every core again."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: nothing to split")
    server = start({"models": [CHAT, embeddings(minilm_onnx["fp32"])]}, [])
    assert by_name(admin(server.url))["chat"]["cpu"]["threads"] == cores
    stop = threading.Event()

    def embed_until_stopped() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while not stop.is_set():
                assert http.post("/v1/embeddings", json={"model": "embed",
                                                         "input": "busy"}).status_code == 200

    seen: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        embedders = [pool.submit(embed_until_stopped) for _ in range(2)]
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=120, json={
                "model": "chat", "max_tokens": 200, "ignore_eos": True, "stream": True,
                "messages": [{"role": "user", "content": "Count."}]}) as stream:
            for _ in stream.iter_lines():
                threads = by_name(admin(server.url))["chat"]["cpu"]["threads"]
                seen.append(threads)
                if threads < cores:
                    break
        stop.set()
        for embedder in embedders:
            embedder.result()
    assert seen and seen[-1] == apportion(cores, [2, 1])[0], seen  # chat weighs 2, embeddings 1
    deadline = time.monotonic() + 15
    while by_name(admin(server.url))["chat"]["cpu"]["threads"] != cores:
        assert time.monotonic() < deadline, "chat did not get its cores back"
        time.sleep(0.2)
    answers(server.url)
