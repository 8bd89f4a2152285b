"""Three `modelserve serve` processes behind a round-robin load balancer on loopback, sharing
one real Redis, as the compose stack and the Helm chart run them: a key's rate limit holds
across the replicas (whichever replica the over-limit request lands on answers 429), and a
response cached through one replica is a hit through the others."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from tests.conftest import SMOLLM2, free_port

MODEL = "smollm2"
REPLICAS = 3
RPM = 5
# Upstream headers the balancer does not pass back as they are (httpx decoded the body).
HOP_HEADERS = {b"connection", b"content-length", b"transfer-encoding", b"content-encoding",
               b"keep-alive", b"host"}


class RoundRobin:
    """A minimal HTTP load balancer (ASGI): each request goes to the next replica in turn,
    like nginx's default; the answer names the replica in `x-upstream`."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self._turn = itertools.count()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        upstream = self.upstreams[next(self._turn) % len(self.upstreams)]
        target = scope["path"] + (f"?{scope['query_string'].decode()}"
                                  if scope["query_string"] else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_HEADERS]
        async with httpx.AsyncClient(base_url=upstream, timeout=120) as client:
            answer = await client.request(scope["method"], target, content=body,
                                          headers=headers)
        out = [(k, v) for k, v in answer.headers.raw if k.lower() not in HOP_HEADERS]
        out.append((b"x-upstream", upstream.encode()))
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": out})
        await send({"type": "http.response.body", "body": answer.content})


@contextlib.contextmanager
def balancer(upstreams: list[str]) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(RoundRobin(upstreams), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "balancer did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def replicas(config: Path, count: int) -> Iterator[list[str]]:
    """`count` server processes on free ports, all ready (start-up models loaded)."""
    ports = [free_port() for _ in range(count)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "modelserve.cli", "serve", "--config", str(config), "--port",
         str(port)], env={**os.environ, "MODELSERVE_LOG_LEVEL": "warning"})
        for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 180
        for url, proc in zip(urls, procs, strict=True):
            while True:
                try:
                    if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, f"replica {url} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"replica {url} not ready in time"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Cluster:
    def __init__(self, url: str, replicas: list[str], limited_key: str, free_key: str) -> None:
        self.url = url
        self.replicas = replicas
        self.limited_key = limited_key
        self.free_key = free_key


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Cluster]:
    # Unique keys per run: Redis may keep counters from an earlier local run.
    run = uuid.uuid4().hex[:12]
    limited_key, free_key = f"limited-{run}-key", f"free-{run}-key"
    config = tmp_path_factory.mktemp("replicas") / "models.yaml"
    config.write_text(yaml.safe_dump({
        "server": {
            "cache": {"enabled": True, "url": redis_url},
            "rate_limits": {"storage": redis_url},
            "security": {"api_keys": [
                {"key": limited_key, "name": f"replica-limited-{run}", "scope": "user",
                 "limits": {"requests_per_minute": RPM}},
                {"key": free_key, "name": f"replica-free-{run}", "scope": "user"},
            ]},
        },
        "models": [{"name": MODEL, "source": SMOLLM2,
                    # small and single-threaded: three replicas share two cores here
                    "options": {"context_size": 256, "parallel": 2, "threads": 1}}],
    }))
    with replicas(config, REPLICAS) as urls, balancer(urls) as url:
        yield Cluster(url, urls, limited_key, free_key)


def chat(cluster: Cluster, key: str, prompt: str) -> httpx.Response:
    return httpx.post(f"{cluster.url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": MODEL, "max_tokens": 8, "temperature": 0,
                            "messages": [{"role": "user", "content": prompt}]})


def test_balancer_spreads_requests_over_every_replica(cluster: Cluster) -> None:
    seen = set()
    for _ in range(REPLICAS):
        answer = httpx.get(f"{cluster.url}/health", timeout=30)
        assert answer.status_code == 200
        seen.add(answer.headers["x-upstream"])
    assert seen == set(cluster.replicas)


def test_rate_limit_holds_across_replicas(cluster: Cluster) -> None:
    run = uuid.uuid4().hex
    allowed = [chat(cluster, cluster.limited_key, f"Count to {i}, run {run}")
               for i in range(RPM)]
    assert [a.status_code for a in allowed] == [200] * RPM
    # the allowance was spent on all three replicas, yet is one allowance
    assert {a.headers["x-upstream"] for a in allowed} == set(cluster.replicas)
    # over the limit: refused by whichever replica each request lands on
    refused = [chat(cluster, cluster.limited_key, f"One more, {i}, run {run}")
               for i in range(REPLICAS)]
    assert {r.headers["x-upstream"] for r in refused} == set(cluster.replicas)
    for answer in refused:
        assert answer.status_code == 429, answer.text
        error = answer.json()["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert error["type"] == "requests"
        assert int(answer.headers["retry-after"]) >= 1
    # another key is not affected
    assert chat(cluster, cluster.free_key, f"Unlimited {run}").status_code == 200


def test_cache_entry_from_one_replica_hits_on_the_others(cluster: Cluster) -> None:
    prompt = f"Say something about replicas, run {uuid.uuid4().hex}"
    first = chat(cluster, cluster.free_key, prompt)
    assert first.status_code == 200
    assert first.headers["x-modelserve-cache"] == "miss"
    others = [chat(cluster, cluster.free_key, prompt) for _ in range(REPLICAS - 1)]
    assert {first.headers["x-upstream"], *(o.headers["x-upstream"] for o in others)} == \
        set(cluster.replicas)
    for other in others:
        assert other.status_code == 200
        assert other.headers["x-modelserve-cache"] == "hit"
        assert other.content == first.content
