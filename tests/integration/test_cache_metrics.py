"""Response cache (memory and Redis, shared by two server processes) and Prometheus metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve, serve_process
from tests.helpers import samples, value

CHAT = "smollm2"
EMBED = "minilm"


def config(minilm: Path, cache: dict[str, Any]) -> dict[str, Any]:
    return {"server": {"cache": {"enabled": True, **cache}},
            "models": [{"name": CHAT, "source": SMOLLM2,
                        "options": {"context_size": 512, "parallel": 4, "batch_size": 256}},
                       {"name": EMBED, "kind": "embeddings", "source": str(minilm)}]}


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory,
           minilm_onnx: dict[str, Path]) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("cache"), config(minilm_onnx["fp32"], {})) as live:
        yield live


@pytest.fixture()
def http(cached: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cached.url, timeout=120) as c:
        yield c


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": CHAT, "messages": [{"role": "user", "content": text}], "max_tokens": 48,
            "temperature": 0, **extra}


def timed(http: httpx.Client, path: str, body: dict[str, Any],
          **kw: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    resp = http.post(path, json=body, **kw)
    return resp, time.perf_counter() - started


def test_repeat_is_a_byte_identical_faster_hit(http: httpx.Client) -> None:
    body = ask(f"Write a haiku about caching {uuid.uuid4().hex[:6]}.")
    first, miss_s = timed(http, "/v1/chat/completions", body)
    second, hit_s = timed(http, "/v1/chat/completions", body)
    assert first.headers["x-modelserve-cache"] == "miss"
    assert second.headers["x-modelserve-cache"] == "hit"
    assert second.content == first.content
    assert hit_s < miss_s
    # `stream` and `user` do not change the answer, so they share the entry ...
    streamed = http.post("/v1/chat/completions", json={**body, "user": "u1", "stream": True,
                                                       "stream_options": {"include_usage": True}})
    assert streamed.headers["x-modelserve-cache"] == "hit"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    # ... and any field that does change it makes a new entry.
    other = http.post("/v1/chat/completions", json={**body, "max_tokens": 47})
    assert other.headers["x-modelserve-cache"] == "miss"


def test_streaming_replay_is_a_valid_stream(cached: LiveServer) -> None:
    client = cached.openai()
    messages = [{"role": "user", "content": f"Count to five {uuid.uuid4().hex[:6]}."}]

    def stream() -> tuple[str, str | None, Any]:
        text, finish, usage = "", None, None
        for chunk in client.chat.completions.create(
                model=CHAT, messages=messages, max_tokens=32, temperature=0, stream=True,
                stream_options={"include_usage": True}):  # type: ignore[arg-type]
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        return text, finish, usage

    live = stream()  # a streaming miss stores what it streamed
    replay = stream()
    assert replay == live and live[0] and live[1] in ("stop", "length")
    plain = client.chat.completions.create(model=CHAT, messages=messages,  # type: ignore
                                           max_tokens=32, temperature=0)
    assert plain.choices[0].message.content == live[0]



def test_tool_calls_are_cached_and_replayed_as_deltas(cached: LiveServer) -> None:
    """A streamed forced call is stored as streamed (same ids), and replays as the same
    deltas, streamed or not."""
    from tests.integration.test_tools import TOOLS, streamed

    client = cached.openai()
    ask: dict[str, Any] = {
        "model": CHAT, "tools": TOOLS, "tool_choice": "required", "max_tokens": 120,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Weather in Paris? {uuid.uuid4().hex[:6]}"}]}
    live = streamed(client, **ask)  # a streaming miss stores what it streamed
    assert live[2] == "tool_calls" and live[1]
    assert streamed(client, **ask) == live
    plain = client.chat.completions.with_raw_response.create(**ask)
    assert plain.headers["x-modelserve-cache"] == "hit"
    answer = plain.parse()
    assert answer.choices[0].finish_reason == "tool_calls"
    assert [{"name": c.function.name, "arguments": c.function.arguments}  # type: ignore[union-attr]
            for c in answer.choices[0].message.tool_calls or []] == live[1]

def sse_chunks(resp: httpx.Response) -> list[Any]:
    """The stream's chunks less id and created (which differ per response), consecutive
    content deltas of one choice joined: a live stream sends one per token, a replay one."""
    out: list[Any] = []
    for line in resp.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = {k: v for k, v in json.loads(line[6:]).items() if k not in ("id", "created")}
        prev = out[-1] if out else None
        if prev and len(chunk["choices"]) == len(prev["choices"]) == 1:
            a, b = prev["choices"][0], chunk["choices"][0]
            if a["index"] == b["index"] and {**a, "delta": {}} == {**b, "delta": {}} \
                    and set(a["delta"]) == set(b["delta"]) == {"content"}:
                a["delta"]["content"] += b["delta"]["content"]
                continue
        out.append(chunk)
    return out


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_replay_chunks_are_the_live_streams(http: httpx.Client,
                                                      include_usage: bool) -> None:
    body = ask(f"Name three colours {uuid.uuid4().hex[:6]}.", stream=True,
               stream_options={"include_usage": include_usage})
    live = http.post("/v1/chat/completions", json=body)
    replay = http.post("/v1/chat/completions", json=body)
    assert (live.headers["x-modelserve-cache"], replay.headers["x-modelserve-cache"]) == (
        "miss", "hit")
    assert live.text.endswith("data: [DONE]\n\n") and replay.text.endswith("data: [DONE]\n\n")
    chunks = sse_chunks(live)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"]["content"]
    assert sse_chunks(replay) == chunks
    assert all(("usage" in c) == include_usage for c in chunks)


def test_only_deterministic_requests_are_cached(http: httpx.Client) -> None:
    body = ask(f"Say hello {uuid.uuid4().hex[:6]}.")
    sampled = ask(body["messages"][0]["content"], temperature=0.8)
    for _ in range(2):
        assert http.post("/v1/chat/completions", json=sampled).headers[
            "x-modelserve-cache"] == "bypass"
    seeded = {**sampled, "seed": 7}
    assert http.post("/v1/chat/completions", json=seeded).headers["x-modelserve-cache"] == "miss"
    again = http.post("/v1/chat/completions", json=seeded)
    assert again.headers["x-modelserve-cache"] == "hit"
    http.post("/v1/chat/completions", json=body)
    fresh = http.post("/v1/chat/completions", json=body, headers={"Cache-Control": "no-cache"})
    assert fresh.headers["x-modelserve-cache"] == "bypass" and fresh.status_code == 200


def test_completions_and_embeddings_are_cached(http: httpx.Client) -> None:
    comp = {"model": CHAT, "prompt": f"Once upon a time {uuid.uuid4().hex[:6]}",
            "max_tokens": 12, "temperature": 0}
    first = http.post("/v1/completions", json=comp)
    second = http.post("/v1/completions", json=comp)
    assert (first.headers["x-modelserve-cache"], second.headers["x-modelserve-cache"]) == (
        "miss", "hit")
    assert second.content == first.content
    replay = http.post("/v1/completions", json={**comp, "stream": True})
    assert replay.headers["x-modelserve-cache"] == "hit"
    events = [line[6:] for line in replay.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(c["text"] for e in events[:-1] for c in json.loads(e)["choices"])
    assert text == first.json()["choices"][0]["text"]
    emb = {"model": EMBED, "input": [f"cache me {uuid.uuid4().hex}", "and me"]}
    e1, e2 = http.post("/v1/embeddings", json=emb), http.post("/v1/embeddings", json=emb)
    assert (e1.headers["x-modelserve-cache"], e2.headers["x-modelserve-cache"]) == (
        "miss", "hit")
    assert e1.content == e2.content


def test_metrics_parse_and_move(http: httpx.Client) -> None:
    before = samples(http)
    body = ask(f"Tell me a fact {uuid.uuid4().hex[:6]}.", max_tokens=8)
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    assert http.post("/v1/chat/completions", json=body).status_code == 200  # a hit
    assert http.post("/v1/chat/completions", json={"model": "nope", "messages": []}
                     ).status_code == 400
    after = samples(http, "/metrics")  # the alias serves the same registry
    route = "/v1/chat/completions"

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("modelserve_requests_total", route=route, model=CHAT, status="200") == 2
    assert moved("modelserve_requests_total", route=route, model="", status="400") == 1
    assert moved("modelserve_request_duration_seconds_count", route=route, model=CHAT) == 2
    assert moved("modelserve_time_to_first_token_seconds_count", model=CHAT) == 1
    assert moved("modelserve_queue_wait_seconds_count", model=CHAT) == 1
    assert moved("modelserve_inter_token_latency_seconds_count", model=CHAT) >= 1
    assert moved("modelserve_cache_requests_total", route="chat", result="hit") == 1
    assert moved("modelserve_cache_stores_total", route="chat") == 1
    assert moved("modelserve_completion_tokens_total", model=CHAT) >= 2
    assert value(after, "modelserve_model_state", model=CHAT, state="ready") == 1
    assert value(after, "modelserve_loaded_models") == 2
    assert value(after, "modelserve_model_memory_bytes", model=CHAT) > 50e6
    assert value(after, "modelserve_model_load_seconds_count", model=CHAT) == 1
    assert value(after, "modelserve_kv_cache_capacity_tokens", model=CHAT) == 4 * 512
    assert value(after, "modelserve_kv_cache_used_tokens", model=CHAT) > 0


# -- two server processes sharing one Redis ---------------------------------------------------


def test_two_processes_share_redis_cache(tmp_path: Path, redis_url: str,
                                         minilm_onnx: dict[str, Path]) -> None:
    cfg = config(minilm_onnx["fp32"], {"url": redis_url})
    with serve(tmp_path, cfg) as here, serve_process(tmp_path, cfg) as other:
        body = ask(f"Shared answer {uuid.uuid4().hex}", max_tokens=16)
        first = httpx.post(f"{here.url}/v1/chat/completions", json=body, timeout=120)
        second = httpx.post(f"{other}/v1/chat/completions", json=body, timeout=120)
        assert first.headers["x-modelserve-cache"] == "miss"
        assert second.headers["x-modelserve-cache"] == "hit"
        assert second.content == first.content
