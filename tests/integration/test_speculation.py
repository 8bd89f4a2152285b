"""Speculative decoding and the host-memory prompt store, through HTTP with SmolLM2.

Speculation must be invisible in greedy outputs. llama.cpp's CPU kernels are only batch-
invariant while each sequence holds fewer than ~256 KV cells (a lone sequence's single row
then takes the same attention path as rows in a batch), so these conversations stay short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve
from tests.helpers import greedy_stream_text, metric

SPEC, PLAIN, STORE = "smol-spec", "smol-plain", "smol-store"
LIST = ", ".join(f"item {i}" for i in range(1, 25))
TOPICS = ["cats", "dogs", "ships", "robots", "trees", "kings", "rivers", "stars", "birds",
          "cars", "moons", "fish", "horses", "cities", "mountains", "books"]
PROMPTS = [f"Repeat this list exactly: {LIST}" if i % 2 else f"Tell me a story about {t}."
           for i, t in enumerate(TOPICS)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    small = {"context_size": 256, "parallel": 16, "batch_size": 512}
    with serve(tmp_path_factory.mktemp("speculation"), {"models": [
        {"name": SPEC, "source": SMOLLM2, "options": {**small, "speculation": "ngram"}},
        {"name": PLAIN, "source": SMOLLM2, "options": {**small, "speculation": "off"}},
        {"name": STORE, "source": SMOLLM2,
         "options": {"context_size": 4096, "parallel": 2, "batch_size": 256,
                     "host_cache_mb": 512}}]}) as server:
        yield server


@pytest.fixture()
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=300) as c:
        yield c


async def answer(client: openai.AsyncOpenAI, model: str, prompt: str) -> str:
    return await greedy_stream_text(client, model, prompt, max_tokens=100)


def test_greedy_outputs_are_the_same_with_speculation_alone_and_among_16_streams(
        live: LiveServer, http: httpx.Client) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused",
                                      max_retries=0, timeout=300) as client:
            plain = [await answer(client, PLAIN, p) for p in PROMPTS]
            alone = [await answer(client, SPEC, p) for p in PROMPTS]
            together = await asyncio.gather(*(answer(client, SPEC, p) for p in PROMPTS))
        return plain, alone, list(together)

    plain, alone, together = asyncio.run(scenario())
    assert all(plain)
    assert alone == plain
    assert together == plain
    # the list prompts are answered by quoting them: drafts were made and taken
    assert metric(http, "modelserve_draft_tokens_accepted_total", SPEC) > 20
    assert metric(http, "modelserve_draft_tokens_total", PLAIN) == 0


def _turn(http: httpx.Client, messages: list[dict[str, str]], max_tokens: int = 24
          ) -> dict[str, Any]:
    resp = http.post("/v1/chat/completions", json={
        "model": STORE, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_a_conversation_pushed_out_by_40_others_comes_back_cached(http: httpx.Client) -> None:
    facts = " ".join(f"Fact {i}: the {t} number {i * 7} is kept in drawer {i}."
                     for i, t in enumerate(TOPICS * 2))
    history = [{"role": "system", "content": f"You know these facts. {facts}"},
               {"role": "user", "content": "Which drawer holds fact 3?"}]
    first = _turn(http, history)
    history += [first["choices"][0]["message"],
                {"role": "user", "content": "And fact 5?"}]
    hits = metric(http, "modelserve_prompt_store_hits_total", STORE)
    for i in range(40):  # each takes a slot and pushes an older prefix out of it
        _turn(http, [{"role": "user", "content": f"Conversation {i}: {TOPICS[i % 16]} "
                      f"{facts[i * 40:]}"}], max_tokens=1)
    again = _turn(http, history)
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1
    assert metric(http, "modelserve_prompt_store_hits_total", STORE) > hits
    assert metric(http, "modelserve_prompt_store_bytes", STORE) > 0


def test_a_cancelled_long_prompt_sent_again_is_mostly_cached(live: LiveServer,
                                                             http: httpx.Client) -> None:
    words = " ".join(f"word{i}" for i in range(700))
    prompt = f"Cancelled once: count these words. {words}"
    body = {"model": STORE, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 4, "temperature": 0, "stream": True}
    used_before = metric(http, "modelserve_kv_cache_used_tokens", STORE)
    with httpx.Client(base_url=live.url, timeout=300) as streamer, \
            streamer.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        deadline = time.monotonic() + 120
        # hang up once the engine has computed a good part of the prompt, not all of it
        while metric(http, "modelserve_kv_cache_used_tokens", STORE) < used_before + 1000:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    again = http.post("/v1/chat/completions", json={**body, "stream": False})
    assert again.status_code == 200, again.text
    usage = again.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 1000
    assert usage["prompt_tokens"] > 1400
