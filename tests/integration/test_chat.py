"""/v1/chat/completions through HTTP with the official openai SDK and the real SmolLM2."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import openai

from tests.conftest import CHAT_MODEL

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def greedy(client: openai.OpenAI, messages: list[dict[str, str]], **kw: object) -> str:
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=messages,  # type: ignore
                                          temperature=0, **kw)
    return resp.choices[0].message.content or ""


def test_non_stream_has_text_and_usage(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_tokens=24, temperature=0, logprobs=True)
    choice = resp.choices[0]
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 10
    # one logprob entry per generated token: completion_tokens is exact
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert resp.usage.completion_tokens == len(choice.logprobs.content)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_stream_matches_non_stream_and_reports_usage(client: openai.OpenAI) -> None:
    expected = greedy(client, HELLO, max_tokens=24)
    stream = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=24, temperature=0,  # type: ignore
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 24


def test_n_choices(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_tokens=8, temperature=0, n=2)
    assert [c.index for c in resp.choices] == [0, 1]
    assert resp.choices[0].message.content == resp.choices[1].message.content
    # both choices are greedy over the same prompt: same length, counted twice
    assert resp.usage is not None and resp.usage.completion_tokens % 2 == 0


def test_n_choices_stream_interleaves(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                            max_tokens=6, temperature=0.8, seed=3, n=2,
                                            stream=True)
    texts = {0: "", 1: ""}
    finished = set()
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finished.add(c.index)
    assert finished == {0, 1} and texts[0] and texts[1]


def test_stop_string_is_not_emitted(client: openai.OpenAI) -> None:
    full = greedy(client, HELLO, max_tokens=30)
    words = full.split()
    assert len(words) > 3
    stop = " " + words[2]
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_tokens=30, temperature=0, stop=[stop, "zzzz"])
    text = resp.choices[0].message.content or ""
    assert resp.choices[0].finish_reason == "stop"
    assert stop not in text and full.startswith(text) and len(text) < len(full)


def test_stop_string_stream(client: openai.OpenAI) -> None:
    full = greedy(client, HELLO, max_tokens=30)
    stop = full.split()[3]
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                            max_tokens=30, temperature=0, stop=stop, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert stop not in text and full.startswith(text)


def test_max_tokens_one(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_tokens=1)
    assert resp.usage is not None and resp.usage.completion_tokens == 1
    assert resp.choices[0].finish_reason == "length"
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_completion_tokens=2)
    assert resp.usage is not None and resp.usage.completion_tokens == 2


def test_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        resp = client.chat.completions.create(
            model=CHAT_MODEL, messages=HELLO, max_tokens=20, temperature=1.2,  # type: ignore
            top_p=0.95, seed=seed, extra_body={"top_k": 50, "min_p": 0.01})
        return resp.choices[0].message.content or ""

    first = sample(1234)
    assert sample(1234) == first
    assert any(sample(s) != first for s in (1, 2, 3))


def test_top_logprobs_are_sorted_and_greedy_picks_best(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_tokens=5, temperature=0, logprobs=True,
                                          top_logprobs=3)
    content = resp.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 5
    for entry in content:
        tops = entry.top_logprobs
        assert len(tops) == 3 and entry.logprob <= 0
        assert [t.logprob for t in tops] == sorted((t.logprob for t in tops), reverse=True)
        assert tops[0].token == entry.token and entry.bytes is not None


def test_logit_bias_bans_and_forces_tokens(client: openai.OpenAI, http: httpx.Client) -> None:
    base = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO,  # type: ignore
                                          max_tokens=3, temperature=0, logprobs=True)
    first = base.choices[0].logprobs.content[0].token  # type: ignore[index,union-attr]
    first_id = http.post("/tokenize", json={"model": CHAT_MODEL, "prompt": first}).json()
    banned = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=3, temperature=0,  # type: ignore
        logprobs=True, logit_bias={str(first_id["tokens"][0]): -100})
    assert banned.choices[0].logprobs.content[0].token != first  # type: ignore[index,union-attr]
    banana = http.post("/tokenize", json={"model": CHAT_MODEL, "prompt": " banana"}).json()
    forced = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=3, temperature=0,  # type: ignore
        logit_bias={str(banana["tokens"][-1]): 100})
    assert "banana" in (forced.choices[0].message.content or "")


def test_penalties_are_accepted(client: openai.OpenAI) -> None:
    penalised = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=20, temperature=0,  # type: ignore
        presence_penalty=1.5, frequency_penalty=1.5, extra_body={"repeat_penalty": 1.3})
    assert penalised.choices[0].message.content


def test_content_parts_and_developer_role(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=5, temperature=0,
        messages=[{"role": "developer", "content": "Be brief."},  # type: ignore
                  {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                               {"type": "text", "text": "there"}]}])
    assert resp.choices[0].message.content


def test_sixteen_concurrent_streams_equal_solo(
        async_client: Callable[[], openai.AsyncOpenAI]) -> None:
    topics = ["cats", "dogs", "ships", "robots", "trees", "kings", "rivers", "stars", "birds",
              "cars", "moons", "fish", "horses", "cities", "mountains", "books"]
    prompts = [[{"role": "user", "content": f"Tell me a short story about {t}."}] for t in topics]

    async def stream(client: openai.AsyncOpenAI, messages: list[dict[str, str]]) -> str:
        out = await client.chat.completions.create(
            model=CHAT_MODEL, messages=messages, max_tokens=32, temperature=0,  # type: ignore
            stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in out if c.choices])

    async def scenario() -> tuple[list[str], list[str]]:
        async with async_client() as client:
            solo = [await stream(client, p) for p in prompts]
            together = await asyncio.gather(*(stream(client, p) for p in prompts))
        return solo, list(together)

    solo, together = asyncio.run(scenario())
    assert all(solo)
    assert together == solo
