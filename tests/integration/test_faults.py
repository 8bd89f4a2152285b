"""Redis killed (-9) and restarted under traffic, for both rate-limit policies, against a real
server process whose response cache and rate limits (requests, tokens, concurrency) live in
that Redis: no 500 on any route, the policy is what clients see, /ready tells, and traffic
recovers by itself within seconds of Redis returning."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, RedisServer, ServerProcess, server_process
from tests.helpers import samples, value

KEY = "faults-" + secrets.token_hex(12)
AUTH = {"Authorization": f"Bearer {KEY}"}
SLOWEST_ANSWER_S = 3.0  # no request may wait long on a dead Redis
RECOVERY_S = 5.0


def config(redis_url: str, policy: str, minilm: Path) -> dict[str, Any]:
    return {
        "server": {
            "cache": {"enabled": True, "url": redis_url},
            "rate_limits": {"storage": redis_url, "on_storage_error": policy,
                            "default": {"requests_per_minute": 100_000,
                                        "tokens_per_minute": 10_000_000,
                                        "concurrent_requests": 8}},
            "security": {"api_keys": [{"key": KEY, "scope": "admin", "name": "faults"}]},
        },
        "models": [{"name": "chat", "source": SMOLLM2,
                    # one thread: llama.cpp's thread barriers crawl on a busy 2-core box
                    "options": {"context_size": 256, "parallel": 2, "batch_size": 64,
                                "threads": 1}},
                   {"name": "embed", "kind": "embeddings", "source": str(minilm)}],
    }


def chat_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 4, "temperature": 0, **extra}


# Every API route a client uses, as (method, path, body maker).
ROUTES: list[tuple[str, str, Callable[[int], dict[str, Any] | None]]] = [
    ("POST", "/v1/chat/completions", lambda i: chat_body(f"Say hi {i % 3}")),
    ("POST", "/v1/chat/completions", lambda i: chat_body("Count", stream=True, seed=i)),
    ("POST", "/v1/completions", lambda i: {"model": "chat", "prompt": "Once", "max_tokens": 4,
                                           "temperature": 0}),
    ("POST", "/v1/embeddings", lambda i: {"model": "embed", "input": f"hello {i % 3}"}),
    ("GET", "/v1/models", lambda i: None),
]


@dataclass
class Answer:
    path: str
    status: int
    seconds: float
    code: str | None
    retry_after: str | None
    cache: str | None


class Traffic:
    """A client thread going round ROUTES until stopped (bounded in count and time)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=10) as http:
            for i in range(2000):
                if self.stop.is_set():
                    return
                method, path, body = ROUTES[i % len(ROUTES)]
                started = time.monotonic()
                resp = http.request(method, path, json=body(i))
                code = resp.json()["error"]["code"] if resp.status_code >= 400 else None
                self.answers.append(Answer(path, resp.status_code, time.monotonic() - started,
                                           code, resp.headers.get("retry-after"),
                                           resp.headers.get("x-modelserve-cache")))

    def take(self, at_least: int = 0, within: float = 30.0) -> list[Answer]:
        """The answers so far (waiting, up to `within` seconds, for `at_least` of them)."""
        deadline = time.monotonic() + within
        while len(self.answers) < at_least and time.monotonic() < deadline and \
                self.thread.is_alive():
            time.sleep(0.05)
        taken, self.answers = self.answers, []
        return taken

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def assert_served(answers: list[Answer]) -> None:
    assert answers, "no traffic"
    assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:3]


def wait_until(check: Callable[[], bool], seconds: float) -> float:
    """Poll `check` until it holds; returns how long that took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "did not recover in time"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_redis_killed_and_restarted_under_traffic(tmp_path: Path, policy: str,
                                                  minilm_onnx: dict[str, Path]) -> None:
    with RedisServer() as redis, \
            server_process(tmp_path, config(redis.url, policy, minilm_onnx["fp32"])) as server, \
            httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        with Traffic(server.url) as traffic:
            assert_served(traffic.take(at_least=2 * len(ROUTES)))
            redis.kill()
            time.sleep(2.5)
            down = traffic.take()
            ready = http.get("/ready")
            health, metrics = http.get("/health"), samples(http, "/metrics")
        assert health.status_code == 200
        assert len(down) >= 5 and {a.path for a in down} == {p for _, p, _ in ROUTES}
        assert max(a.seconds for a in down) < SLOWEST_ANSWER_S
        assert value(metrics, "modelserve_dependency_up", dependency="rate_limits") == 0
        assert value(metrics, "modelserve_dependency_errors_total",
                      dependency="rate_limits") >= 1
        if policy == "fail_open":
            check_fail_open(down, ready, metrics)
        else:
            check_fail_closed(down, ready)

        redis.start()  # same port, empty
        took = wait_until(lambda: recovered(http, policy), RECOVERY_S)
        with Traffic(server.url) as traffic:
            assert_served(traffic.take(at_least=2 * len(ROUTES)))
        body = http.get("/ready").json()
        assert body == {"status": "ready",
                        "dependencies": {"cache": "up", "rate_limits": "up"}}, took
        after = samples(http, "/metrics")
        assert value(after, "modelserve_dependency_up", dependency="cache") == 1
        assert value(after, "modelserve_requests_total", route="/v1/chat/completions",
                      model="chat", status="500") == 0


def check_fail_open(down: list[Answer], ready: httpx.Response,
                    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    """Served, unlimited and uncached; still ready (nothing it needs is down)."""
    assert_served(down)
    assert {a.cache for a in down if a.cache is not None} <= {"miss", "bypass"}
    assert ready.status_code == 200
    assert ready.json()["dependencies"] == {"cache": "down", "rate_limits": "down"}
    assert value(metrics, "modelserve_dependency_errors_total", dependency="cache") >= 1
    assert value(metrics, "modelserve_rate_limit_unenforced_requests_total") >= len(down) - 1


def check_fail_closed(down: list[Answer], ready: httpx.Response) -> None:
    """Refused with 503 service_unavailable + Retry-After (once the kill was noticed), and
    unready, so balancers stop sending traffic here."""
    refused = [a for a in down if a.status != 200]
    assert refused and {a.status for a in down} <= {200, 503}
    assert down[-1].status == 503
    assert {a.code for a in refused} == {"service_unavailable"}
    assert all(a.retry_after and int(a.retry_after) >= 1 for a in refused)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "dependency_unavailable"
    assert body["dependencies"]["rate_limits"] == "down"


def recovered(http: httpx.Client, policy: str) -> bool:
    """Limits checked again (a 200 with x-ratelimit headers) and the cache storing again."""
    prompt = f"Recovered? {uuid.uuid4().hex[:8]}"
    first = http.post("/v1/chat/completions", json=chat_body(prompt))
    if first.status_code != 200 or "x-ratelimit-remaining-requests" not in first.headers:
        assert first.status_code == (503 if policy == "fail_closed" else 200), first.text
        return False
    return http.post("/v1/chat/completions",
                     json=chat_body(prompt)).headers["x-modelserve-cache"] == "hit"


def test_unready_replica_reports_a_down_dependency(tmp_path: Path,
                                                   minilm_onnx: dict[str, Path]) -> None:
    """fail_closed: /ready probes the storage itself, so an idle replica turns unready when
    Redis dies and ready again when it returns, with no client traffic to notice."""
    with RedisServer() as redis, \
            server_process(tmp_path, config(redis.url, "fail_closed",
                                            minilm_onnx["fp32"])) as server:
        def probe() -> int:
            return httpx.get(f"{server.url}/ready", timeout=5).status_code

        assert probe() == 200
        redis.kill()
        wait_until(lambda: probe() == 503, RECOVERY_S)
        redis.start()
        wait_until(lambda: probe() == 200, RECOVERY_S)
        assert_process_alive(server)


def assert_process_alive(server: ServerProcess) -> None:
    assert server.proc.poll() is None
