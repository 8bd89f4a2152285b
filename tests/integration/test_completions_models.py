"""/v1/completions, /v1/models, /tokenize, health and metrics through HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL


def test_completion_text_prompt(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is",
                                     max_tokens=5, temperature=0)
    assert resp.object == "text_completion" and resp.choices[0].text
    assert resp.usage is not None and resp.usage.completion_tokens <= 5


def test_completion_default_max_tokens_is_16(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=CHAT_MODEL, prompt="Once upon a time", temperature=0)
    assert resp.usage is not None and resp.usage.completion_tokens <= 16


def test_completion_token_prompts_and_batch(client: openai.OpenAI, http: httpx.Client) -> None:
    ids = http.post("/tokenize", json={"model": CHAT_MODEL, "prompt": "Hello"}).json()["tokens"]
    single = client.completions.create(model=CHAT_MODEL, prompt=ids, max_tokens=3, temperature=0)
    text = client.completions.create(model=CHAT_MODEL, prompt="Hello", max_tokens=3,
                                     temperature=0)
    assert single.choices[0].text == text.choices[0].text
    batch = client.completions.create(model=CHAT_MODEL, prompt=["Hello", "Goodbye"], n=2,
                                      max_tokens=3, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert batch.choices[0].text == text.choices[0].text
    lists = client.completions.create(model=CHAT_MODEL, prompt=[ids, ids], max_tokens=2)
    assert len(lists.choices) == 2


def test_completion_echo_logprobs_stream(client: openai.OpenAI) -> None:
    echo = client.completions.create(model=CHAT_MODEL, prompt="Roses are", max_tokens=3,
                                     temperature=0, echo=True)
    assert echo.choices[0].text.startswith("Roses are")
    lp = client.completions.create(model=CHAT_MODEL, prompt="Roses are", max_tokens=3,
                                   temperature=0, logprobs=2)
    logprobs = lp.choices[0].logprobs
    assert logprobs is not None and len(logprobs.tokens or []) == 3
    assert all(len(t) == 2 for t in logprobs.top_logprobs or [])
    assert "".join(logprobs.tokens or []) == lp.choices[0].text
    stream = client.completions.create(model=CHAT_MODEL, prompt="Roses are", max_tokens=3,
                                       temperature=0, stream=True, echo=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == echo.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_completion_stream_usage_reports_cached_tokens(client: openai.OpenAI) -> None:
    prompt = "A long and winding road leads past the old mill, over the river and home."

    def streamed_cached() -> int:
        chunks = list(client.completions.create(
            model=CHAT_MODEL, prompt=prompt, max_tokens=3, temperature=0, stream=True,
            stream_options={"include_usage": True}))
        usage = chunks[-1].usage
        assert usage is not None and usage.prompt_tokens_details is not None
        return usage.prompt_tokens_details.cached_tokens or 0

    streamed_cached()  # fills the prefix cache
    again = streamed_cached()
    plain = client.completions.create(model=CHAT_MODEL, prompt=prompt, max_tokens=3,
                                      temperature=0)
    assert plain.usage is not None and plain.usage.prompt_tokens_details is not None
    assert again > 0 and again == plain.usage.prompt_tokens_details.cached_tokens


def test_models_endpoints(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert CHAT_MODEL in ids
    assert client.models.retrieve(CHAT_MODEL).id == CHAT_MODEL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert info.value.code == "model_not_found"


def test_tokenize_roundtrip(http: httpx.Client) -> None:
    toks = http.post("/tokenize", json={"model": CHAT_MODEL, "prompt": "Hi there"}).json()
    assert toks["count"] == len(toks["tokens"]) and toks["max_model_len"] == 1024
    back = http.post("/detokenize", json={"model": CHAT_MODEL, "tokens": toks["tokens"]}).json()
    assert back["prompt"] == "Hi there"
    chat = http.post("/tokenize", json={"model": CHAT_MODEL,
                                        "messages": [{"role": "user", "content": "Hi"}]}).json()
    assert chat["count"] > toks["count"]
    bad = http.post("/detokenize", json={"model": CHAT_MODEL, "tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"


def test_health_ready_metrics(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").status_code == 200
    text = http.get("/metrics").text
    assert f'modelserve_running_sequences{{model="{CHAT_MODEL}"}}' in text
    assert "modelserve_completion_tokens_total" in text
