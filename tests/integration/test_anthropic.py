"""Anthropic's Messages API through the official `anthropic` SDK, against real models:
SmolLM2 for text and streams, Qwen2.5-Coder for tools (the image block: test_vision.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve

TEXT, TOOLS_MODEL = "smol", "qwen"
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
PARIS = [{"role": "user", "content": "What's the weather in Paris?"}]
ANSWER_NOW = "Answer in one sentence with the temperature."


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("anthropic"), {"models": [
        {"name": TEXT, "source": SMOLLM2, "options": {"context_size": 2048, "parallel": 2}},
        {"name": TOOLS_MODEL, "source": str(qwen_gguf),
         "options": {"context_size": 2048, "parallel": 1, "batch_size": 256}},
    ]}) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.url, api_key="unused", max_retries=0)


def test_create_answers_in_anthropics_shape(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=TEXT, max_tokens=12, system="You are terse.",
        messages=[{"role": "user", "content": "Name a colour."}],
        extra_body={"temperature": 0})
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == TEXT
    assert [b.type for b in message.content] == ["text"] and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 5 and 0 < message.usage.output_tokens <= 12


def test_a_stop_sequence_is_reported(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=TEXT, max_tokens=40, stop_sequences=["2"],
        messages=[{"role": "user", "content": "Count from 1 to 5 with digits."}],
        extra_body={"temperature": 0})
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "2"


def test_stream_events_come_in_anthropics_order(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=TEXT, max_tokens=16,
                                messages=[{"role": "user", "content": "Say hello."}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text and texts
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_the_raw_stream_is_well_formed(live: LiveServer) -> None:
    body = {"model": TEXT, "max_tokens": 8, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream("POST", f"{live.url}/v1/messages", json=body, timeout=60) as resp:
        lines = [line for line in resp.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert not any("[DONE]" in line for line in lines)


def test_a_shared_long_system_prompt_is_read_from_the_cache(client: anthropic.Anthropic) -> None:
    system = "You are a helpful assistant for a bakery. " * 40

    def ask(question: str) -> anthropic.types.Message:
        return client.messages.create(model=TEXT, max_tokens=4, system=[
            {"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": question}])

    first = ask("Do you sell bread?")
    second = ask("Do you sell cakes?")
    assert second.usage.cache_read_input_tokens is not None
    assert second.usage.cache_read_input_tokens > 300  # the system prompt, not computed again
    assert second.usage.input_tokens < first.usage.input_tokens


def test_count_tokens_counts_the_rendered_prompt(client: anthropic.Anthropic) -> None:
    def count(text: str) -> int:
        return client.messages.count_tokens(model=TEXT, system="Be brief.", messages=[
            {"role": "user", "content": text}]).input_tokens

    short, longer = count("Hi"), count("Hi there, how are you today?")
    assert 0 < short < longer
    answered = client.messages.create(model=TEXT, max_tokens=1, system="Be brief.",
                                      messages=[{"role": "user", "content": "Hi"}])
    assert answered.usage.input_tokens + (answered.usage.cache_read_input_tokens or 0) == short


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_a_forced_tool_use_round_trips_to_a_text_answer(client: anthropic.Anthropic,
                                                        choice: dict[str, Any]) -> None:
    first = client.messages.create(model=TOOLS_MODEL, max_tokens=100, tools=[WEATHER],
                                   tool_choice=choice, messages=PARIS)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and "paris" in call.input["city"].lower()
    history = [*PARIS, {"role": "assistant", "content": first.content},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                             "content": json.dumps({"temperature": 18,
                                                                    "unit": "celsius",
                                                                    "sky": "sunny"})},
                                            {"type": "text", "text": ANSWER_NOW}]}]
    # `none` and a nudge: left to choose, the 0.5B model asks for the same weather again (a
    # call the grammar makes valid); the point here is the tool_result reaching it.
    second = client.messages.create(model=TOOLS_MODEL, max_tokens=80, tools=[WEATHER],
                                    tool_choice={"type": "none"}, messages=history,
                                    extra_body={"temperature": 0})
    text = "".join(b.text for b in second.content if b.type == "text")
    assert second.stop_reason == "end_turn" and "18" in text, text


def test_a_streamed_tool_use_reassembles(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=TOOLS_MODEL, max_tokens=100, tools=[WEATHER],
                                tool_choice={"type": "any"}, messages=PARIS) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and calls and calls[0].name == "get_weather"
    assert isinstance(calls[0].input, dict) and calls[0].input.get("city")


def test_tool_choice_none_calls_nothing(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=TOOLS_MODEL, max_tokens=30, tools=[WEATHER],
                                     tool_choice={"type": "none"}, messages=PARIS,
                                     extra_body={"temperature": 0})
    assert all(b.type == "text" for b in message.content)


@pytest.mark.parametrize(("body", "needle"), [
    ({"model": TEXT, "messages": PARIS}, "max_tokens"),
    ({"model": TEXT, "max_tokens": 5, "messages": []}, "messages"),
    ({"model": TEXT, "max_tokens": 5, "messages": PARIS,
      "tool_choice": {"type": "tool", "name": "nope"}, "tools": [WEATHER]}, "nope"),
    ({"model": TEXT, "max_tokens": 5, "messages": PARIS,
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search"),
    ({"model": TEXT, "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}}]}]}, "document"),
])
def test_bad_requests_are_400s_in_anthropics_shape(live: LiveServer, body: dict[str, Any],
                                                   needle: str) -> None:
    resp = httpx.post(f"{live.url}/v1/messages", json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert needle in error["error"]["message"]


def test_an_unknown_model_is_a_404_the_sdk_understands(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=4, messages=PARIS)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_x_api_key_is_accepted(tmp_path: Path) -> None:
    key = "anthropic-key-123"
    with serve(tmp_path, {"server": {"security": {"api_keys": [{"key": key}]}},
                          "models": [{"name": TEXT, "source": SMOLLM2,
                                      "options": {"context_size": 256, "parallel": 1}}]}) \
            as server:
        body = {"model": TEXT, "max_tokens": 2, "messages": PARIS}
        ok = httpx.post(f"{server.url}/v1/messages", json=body, headers={"x-api-key": key},
                        timeout=30)
        assert ok.status_code == 200, ok.text
        refused = httpx.post(f"{server.url}/v1/messages", json=body, timeout=30)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert json.loads(ok.text)["usage"]["output_tokens"] > 0
