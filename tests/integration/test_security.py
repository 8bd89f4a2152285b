"""API keys, scopes, per-key rate limits (memory and Redis), input limits, CORS, request logs."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve, serve_process
from tests.helpers import NO_EOS, assert_openai_error, metric

ADMIN = "admin-" + secrets.token_hex(12)
USER = "user-" + secrets.token_hex(12)
RPM5 = "rpm5-" + secrets.token_hex(12)
TPM = "tpm-" + secrets.token_hex(12)
CONC = "conc-" + secrets.token_hex(12)
ALL_KEYS = (ADMIN, USER, RPM5, TPM, CONC)
HELLO = [{"role": "user", "content": "Hello"}]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory,
           minilm_onnx: dict[str, Path]) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("secure"), {
        "server": {
            "max_request_bytes": 64 * 1024,
            "log_format": "json",
            "security": {
                "api_keys": [
                    {"key": ADMIN, "scope": "admin", "name": "ops"},
                    # The user key is configured by its SHA-256 only.
                    {"sha256": hashlib.sha256(USER.encode()).hexdigest()},
                    {"key": RPM5, "limits": {"requests_per_minute": 5}},
                    {"key": TPM, "limits": {"tokens_per_minute": 200}},
                    {"key": CONC, "limits": {"concurrent_requests": 2}},
                ],
                "cors_origins": ["https://app.example"],
            },
            "limits": {"max_messages": 4, "max_message_chars": 2000, "max_n": 2,
                       "max_tokens": 1000, "max_embedding_inputs": 3},
        },
        "models": [
            {"name": "chat", "source": SMOLLM2,
             "options": {"context_size": 1024, "parallel": 4, "batch_size": 256}},
            {"name": "embed", "kind": "embeddings", "source": str(minilm_onnx["fp32"])},
        ],
    }) as live:
        yield live


@pytest.fixture()
def http(secure: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure.url, timeout=120) as c:
        yield c


def chat(http: httpx.Client, key: str, **extra: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", headers=auth(key), json={
        "model": "chat", "messages": HELLO, "max_tokens": 4, "temperature": 0, **extra})


ROUTES = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/chat", None),
    ("POST", "/v1/chat/completions", {"model": "chat", "messages": HELLO}),
    ("POST", "/v1/completions", {"model": "chat", "prompt": "x"}),
    ("POST", "/v1/embeddings", {"model": "embed", "input": "x"}),
    ("POST", "/tokenize", {"model": "chat", "prompt": "x"}),
    ("GET", "/admin/models", None),
    ("POST", "/admin/models/load", {"name": "chat"}),
    ("POST", "/admin/models/unload", {"name": "nope"}),
    ("GET", "/admin/metrics", None),
    ("GET", "/metrics", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_missing_or_wrong_key_is_401(http: httpx.Client, method: str, path: str,
                                     body: Any) -> None:
    for headers in ({}, auth("wrong-key-123456789"), {"Authorization": f"Basic {USER}"},
                    {"Authorization": "Bearer"}):
        resp = http.request(method, path, json=body, headers=headers)
        err = assert_openai_error(resp, 401, code="invalid_api_key")
        assert resp.headers["www-authenticate"] == "Bearer"
        assert USER not in err["message"]


def test_scopes(http: httpx.Client) -> None:
    for path in ("/admin/models", "/admin/metrics", "/metrics"):
        assert_openai_error(http.get(path, headers=auth(USER)), 403,
                            code="insufficient_permissions")
        assert http.get(path, headers=auth(ADMIN)).status_code == 200
    assert chat(http, USER).status_code == 200  # the key given by its SHA-256 works
    assert chat(http, ADMIN).status_code == 200  # admin keys work on /v1 too
    assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200


def test_requests_per_minute_counts_down_then_429(http: httpx.Client) -> None:
    remaining = []
    for _ in range(5):
        resp = http.get("/v1/models", headers=auth(RPM5))
        assert resp.status_code == 200
        assert resp.headers["x-ratelimit-limit-requests"] == "5"
        assert resp.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(int(resp.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = chat(http, RPM5)
    err = assert_openai_error(refused, 429, code="rate_limit_exceeded")
    assert err["type"] == "requests" and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert chat(http, USER).status_code == 200  # other keys are not affected


def test_tokens_per_minute_trips_on_tokens_not_requests(http: httpx.Client) -> None:
    body = {"max_tokens": 60, "logit_bias": NO_EOS}
    first = chat(http, TPM, **body)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert first.headers["x-ratelimit-limit-tokens"] == "200"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) <= 200 - first.json()[
        "usage"]["prompt_tokens"]
    second = chat(http, TPM, **body)  # the first one's completion tokens are settled now
    assert second.status_code == 200 and used * 2 > 100
    third = chat(http, TPM, **body)
    err = assert_openai_error(third, 429, code="rate_limit_exceeded")
    assert err["type"] == "tokens" and third.headers["retry-after"]
    # A request that could never fit is refused on its own size.
    assert_openai_error(chat(http, TPM, max_tokens=300), 429, code="rate_limit_exceeded")


def test_concurrency_limit_trips_at_n_plus_one(secure: LiveServer, http: httpx.Client) -> None:
    body = {"model": "chat", "messages": HELLO, "max_tokens": 200, "temperature": 0,
            "logit_bias": NO_EOS, "stream": True}
    with (httpx.Client(base_url=secure.url, timeout=120) as c1,
          httpx.Client(base_url=secure.url, timeout=120) as c2,
          c1.stream("POST", "/v1/chat/completions", json=body, headers=auth(CONC)) as s1,
          c2.stream("POST", "/v1/chat/completions", json=body, headers=auth(CONC)) as s2):
        assert s1.status_code == 200 and s2.status_code == 200
        # Keep the line iterators: dropping one closes its stream (a disconnect).
        lines = [s1.iter_lines(), s2.iter_lines()]
        for it in lines:
            next(it)
        third = chat(http, CONC)
        err = assert_openai_error(third, 429, code="rate_limit_exceeded")
        assert "concurrent" in err["message"]
    # The slots come back once the server has seen the two clients go (within a step).
    deadline = time.monotonic() + 10
    while (status := chat(http, CONC).status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {"messages": HELLO * 5}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 2001}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"messages": HELLO, "n": 3}, "n"),
    ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 1001}, "max_tokens"),
    ("/v1/completions", {"prompt": "y" * 2001}, "prompt"),
    ("/v1/completions", {"prompt": "y", "n": 3}, "n"),
    ("/v1/embeddings", {"model": "embed", "input": ["a", "b", "c", "d"]}, "input"),
])
def test_input_limits_name_the_limit(http: httpx.Client, path: str, body: dict[str, Any],
                                     param: str) -> None:
    resp = http.post(path, json={"model": "chat", **body}, headers=auth(USER))
    err = assert_openai_error(resp, 400, param=param)
    assert "server limit" in err["message"]
    assert chat(http, USER).status_code == 200


def test_oversize_body_is_413(http: httpx.Client) -> None:
    big = {"model": "chat", "messages": [{"role": "user", "content": "z" * 70_000}]}
    assert_openai_error(http.post("/v1/chat/completions", json=big, headers=auth(USER)), 413,
                        code="request_too_large")
    assert chat(http, USER).status_code == 200


def test_request_wall_time_is_408(tmp_path: Path) -> None:
    with serve(tmp_path, {"server": {"limits": {"request_timeout_seconds": 1}},
                          "models": [{"name": "chat", "source": SMOLLM2,
                                      "options": {"context_size": 1024, "parallel": 1}}]}
               ) as live, httpx.Client(base_url=live.url, timeout=120) as http:
        slow = chat(http, "unused", max_tokens=900, logit_bias=NO_EOS)
        err = assert_openai_error(slow, 408, code="request_timeout")
        assert "request_timeout_seconds" in err["message"]
        # The slot is freed (the sequence is aborted in the model's worker), then serves again;
        # waiting for the gauge keeps a loaded machine's slower abort out of the next 1 s limit.
        deadline = time.monotonic() + 30
        while metric(http, "modelserve_running_sequences", "chat") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(http, "modelserve_running_sequences", "chat") == 0
        assert chat(http, "unused").status_code == 200


def test_cors(http: httpx.Client) -> None:
    pre = http.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    other = http.options("/v1/chat/completions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers
    simple = http.get("/v1/models", headers={**auth(USER), "Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"


def test_cors_is_off_by_default(server: LiveServer) -> None:
    resp = httpx.get(f"{server.url}/v1/models", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in resp.headers


def test_request_log_has_ids_but_never_keys(http: httpx.Client,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        ok = chat(http, USER, messages=[{"role": "user", "content": "log me"}])
        tagged = http.get("/v1/models", headers={**auth(ADMIN), "x-request-id": "trace-42"})
        for key in ALL_KEYS:
            http.get("/admin/models", headers=auth(key))
        http.get("/v1/models", headers=auth(USER + "x"))
    assert tagged.headers["x-request-id"] == "trace-42"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "modelserve.access"]
    mine = next(line for line in lines if line["request_id"] == ok.headers["x-request-id"])
    assert mine["status"] == 200 and mine["model"] == "chat" and mine["prompt_tokens"] > 0
    assert mine["completion_tokens"] > 0 and mine["key_id"].startswith("key-")
    assert mine["path"] == "/v1/chat/completions"
    assert any(line.get("key_id") == "ops" for line in lines)
    everything = caplog.text + http.get("/admin/metrics", headers=auth(ADMIN)).text
    for key in ALL_KEYS:
        assert key not in everything


def test_rate_limited_requests_are_counted(http: httpx.Client) -> None:
    metrics = http.get("/admin/metrics", headers=auth(ADMIN)).text
    assert 'modelserve_rate_limited_requests_total{limit="requests"}' in metrics


# -- two server processes sharing one real Redis enforce one limit ---------------------------


def test_two_processes_share_a_redis_rate_limit(tmp_path: Path, redis_url: str) -> None:
    key = "shared-" + secrets.token_hex(12)
    config = {"server": {"security": {"api_keys": [
                  {"key": key, "limits": {"requests_per_minute": 4}}]},
                         "rate_limits": {"storage": redis_url}},
              "models": [{"name": "chat", "source": SMOLLM2,
                          "options": {"context_size": 256, "parallel": 1}}]}
    with serve(tmp_path, config) as here, serve_process(tmp_path, config) as other:
        codes = [httpx.get(f"{url}/v1/models", headers=auth(key)).status_code
                 for url in (here.url, other, here.url, other)]
        assert codes == [200] * 4
        for url in (here.url, other):
            refused = httpx.get(f"{url}/v1/models", headers=auth(key))
            assert_openai_error(refused, 429, code="rate_limit_exceeded")
            assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_concurrent_requests_keep_serving_under_limits(secure: LiveServer) -> None:
    results: list[int] = []

    def one() -> None:
        results.append(httpx.post(f"{secure.url}/v1/chat/completions", headers=auth(USER),
                                  json={"model": "chat", "messages": HELLO, "max_tokens": 4},
                                  timeout=120).status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
