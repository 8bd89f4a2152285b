"""OpenAI's Responses API through the official `openai` SDK, against real models: SmolLM2 for
text, streams and the store, Qwen2.5-Coder for function tools. The server has two API keys, to
show that a stored response is its own key's only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import SMOLLM2, LiveServer, serve
from tests.fixtures.tiny_mmproj import TinyMmproj, write_tiny_mmproj
from tests.helpers import PNG, THINK_THEN_ANSWER, assert_openai_error, typed_sse

TEXT, TOOLS_MODEL = "smol", "qwen"
KEY_A, KEY_B = "responses-key-a", "responses-key-b"
WEATHER: Any = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
PARIS = "What's the weather in Paris?"
ANSWER_NOW = "Answer in one sentence with the temperature."
# SmolLM2 thinks by itself no more than the other models: a grammar makes it write the shape a
# reasoning model writes (as in test_reasoning.py).
THINKER, VISION = "smol-thinker", "smol-vision"
# ChatML, plus what reasoning templates read.
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% if reasoning_effort %}Think {{ reasoning_effort }}ly.\n{% endif %}"
            "{% if enable_thinking %}<think>\n{% endif %}{% endif %}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path) -> Iterator[LiveServer]:
    mmproj = write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "tiny-mmproj.gguf")
    with serve(tmp_path_factory.mktemp("responses"), {
        "server": {"security": {"api_keys": [{"key": KEY_A, "name": "a"},
                                             {"key": KEY_B}]},
                   "cache": {"enabled": True}},
        "models": [
            {"name": TEXT, "source": SMOLLM2, "options": {"context_size": 2048, "parallel": 2}},
            {"name": VISION, "source": SMOLLM2, "options": {
                "context_size": 512, "parallel": 1, "batch_size": 64, "mmproj": str(mmproj)}},
            {"name": THINKER, "source": SMOLLM2,
             "options": {"context_size": 512, "parallel": 1, "chat_template": TEMPLATE}},
            {"name": TOOLS_MODEL, "source": str(qwen_gguf),
             "options": {"context_size": 2048, "parallel": 1, "batch_size": 256}}]}) as server:
        yield server


def sdk(live: LiveServer, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(live: LiveServer) -> openai.OpenAI:
    return sdk(live)


def post(live: LiveServer, body: dict[str, Any], path: str = "/v1/responses") -> httpx.Response:
    return httpx.post(f"{live.url}{path}", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY_A}"})


def test_a_string_input_gets_a_completed_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=TEXT, input="Name a colour.", instructions="Answer with one word.",
        max_output_tokens=40, temperature=0, metadata={"case": "string"})
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None
    assert response.output_text.strip() and response.model == TEXT
    message = response.output[-1]
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text"
    usage = response.usage
    assert usage is not None and usage.input_tokens > 5 and 0 < usage.output_tokens <= 40
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert response.metadata == {"case": "string"}
    assert response.instructions == "Answer with one word." and response.temperature == 0


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model=TEXT, input="Write a long story about a dragon.",
                                       max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
    assert response.output[-1].status == "incomplete"  # type: ignore[union-attr]


def test_the_stream_helper_accumulates_the_typed_events(client: openai.OpenAI) -> None:
    with client.responses.stream(model=TEXT, input="Say hello.", max_output_tokens=200,
                                 temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == final.output_text
    assert final.status == "completed" and final.usage is not None
    assert final.usage.output_tokens > 0


def test_the_raw_stream_names_each_event_as_its_type(live: LiveServer) -> None:
    events = typed_sse(live.url, "/v1/responses", {
        "model": TEXT, "input": "Hi", "max_output_tokens": 4, "stream": True},
        headers={"Authorization": f"Bearer {KEY_A}"})
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["response"]["output"] == []
    assert events[-1][0] in ("response.completed", "response.incomplete")
    assert not any("error" in data for _, data in events if data["type"] != "response.failed"
                   and "response" not in data)


def test_a_function_tool_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(model=TOOLS_MODEL, input=PARIS, tools=[WEATHER],
                                    tool_choice="required", max_output_tokens=100)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and str(calls[0].id).startswith("fc_")
    assert "paris" in json.loads(calls[0].arguments)["city"].lower()
    history: list[Any] = [{"role": "user", "content": PARIS}, *first.output,
                          {"type": "function_call_output", "call_id": calls[0].call_id,
                           "output": json.dumps({"temperature": 18, "sky": "sunny"})},
                          {"role": "user", "content": ANSWER_NOW}]
    # `none` and a nudge: left to choose, the 0.5B model asks for the same weather again (a
    # call the grammar makes valid); the point here is the result reaching it.
    second = client.responses.create(model=TOOLS_MODEL, input=history, tools=[WEATHER],
                                     tool_choice="none", max_output_tokens=80, temperature=0)
    assert second.status == "completed" and "18" in second.output_text, second.output_text
    assert [item.type for item in second.output] == ["message"]


def test_previous_response_id_carries_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=TOOLS_MODEL, input=PARIS, tools=[WEATHER],
                                    tool_choice={"type": "function", "name": "get_weather"},
                                    max_output_tokens=100)
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model=TOOLS_MODEL, previous_response_id=first.id, tools=[WEATHER], temperature=0,
        max_output_tokens=80, tool_choice="none",
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": json.dumps({"temperature": 18, "sky": "sunny"})},
               {"role": "user", "content": ANSWER_NOW}])
    assert second.previous_response_id == first.id and "18" in second.output_text
    # The earlier turn's input and output were read again: a longer prompt than the first
    # question alone (the tools, offered only to the first, are not in it).
    alone = client.responses.input_tokens.count(model=TOOLS_MODEL, input=PARIS).input_tokens
    assert second.usage is not None and second.usage.input_tokens > alone + 20
    items = client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in items.data] == ["message", "function_call",
                                                  "function_call_output", "message"]


def test_a_streamed_function_call_is_stored_as_streamed(client: openai.OpenAI) -> None:
    with client.responses.stream(model=TOOLS_MODEL, input=PARIS, tools=[WEATHER],
                                 tool_choice="required", max_output_tokens=100) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in types
    assert types.index("response.function_call_arguments.done") < types.index(
        "response.completed")
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]
    stored = client.responses.retrieve(final.id)
    # (The stream helper's items have the SDK's own `parsed_arguments` besides.)
    assert [item.model_dump() for item in stored.output] == \
        [item.model_dump(exclude={"parsed_arguments"}) for item in final.output]


def test_reasoning_is_a_reasoning_item(client: openai.OpenAI) -> None:
    ask: dict[str, Any] = {"model": TEXT, "input": "Say hello.", "max_output_tokens": 120,
                           "temperature": 0, "extra_body": {"grammar": THINK_THEN_ANSWER}}
    whole = client.responses.create(**ask)
    reasoning, message = whole.output
    assert reasoning.type == "reasoning" and reasoning.content and reasoning.content[0].text
    assert message.type == "message" and whole.output_text
    assert "think>" not in reasoning.content[0].text + whole.output_text
    assert whole.usage is not None and whole.usage.output_tokens_details.reasoning_tokens > 0
    with client.responses.stream(**ask) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types.index("response.reasoning_text.delta") < types.index(
        "response.output_text.delta")
    streamed = final.output[0]
    assert streamed.type == "reasoning" and streamed.content is not None
    assert streamed.content[0].text == reasoning.content[0].text
    assert final.output_text == whole.output_text


def test_reasoning_effort_reaches_the_template(client: openai.OpenAI) -> None:
    def count(**extra: Any) -> int:
        return client.responses.input_tokens.count(model=THINKER, input="Say hello.",
                                                   **extra).input_tokens

    assert count(reasoning={"effort": "high"}) > count()


def test_a_cache_hit_is_a_new_response(client: openai.OpenAI) -> None:
    def ask() -> tuple[str | None, Any]:
        raw = client.responses.with_raw_response.create(
            model=TEXT, input="Name a fruit.", temperature=0, max_output_tokens=8)
        return raw.headers.get("x-modelserve-cache"), raw.parse()

    (_, first), (cached, second) = ask(), ask()
    assert cached == "hit" and second.id != first.id
    assert second.output_text == first.output_text
    assert client.responses.retrieve(first.id).id == first.id
    assert client.responses.retrieve(second.id).id == second.id


def test_an_input_image_reaches_a_vision_model(live: LiveServer,
                                              client: openai.OpenAI) -> None:
    question = "What is in this picture?"
    made = client.responses.create(model=VISION, max_output_tokens=4, input=[
        {"role": "user", "content": [{"type": "input_text", "text": question},
                                     {"type": "input_image", "image_url": PNG,
                                      "detail": "low"}]}])
    text_only = post(live, {"model": VISION, "messages": [
        {"role": "user", "content": question + "\n"}]}, "/tokenize").json()["count"]
    # The image part becomes a marker after a newline; the marker, the image's tokens.
    assert made.usage is not None
    assert made.usage.input_tokens == text_only + TinyMmproj().image_tokens


class Colour(BaseModel):
    name: str = Field(max_length=20)
    warm: bool


def test_parse_fills_a_pydantic_model(client: openai.OpenAI) -> None:
    response = client.responses.parse(model=TEXT, input="Give a colour as JSON.",
                                      text_format=Colour, temperature=0, max_output_tokens=60)
    assert isinstance(response.output_parsed, Colour), response.output_text
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_a_stored_response_is_read_listed_and_deleted(client: openai.OpenAI) -> None:
    made = client.responses.create(model=TEXT, input="Say one word.", max_output_tokens=8,
                                   metadata={"n": "1"})
    got = client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == made.output_text
    assert got.metadata == {"n": "1"}
    items = client.responses.input_items.list(made.id)
    assert items.object == "list" and not items.has_more  # type: ignore[attr-defined]
    assert items.data[0].type == "message"
    assert items.data[0].content[0].text == "Say one word."  # type: ignore[union-attr,index]
    assert items.first_id == items.data[0].id == items.last_id  # type: ignore[attr-defined]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_input_items_page(client: openai.OpenAI) -> None:
    made = client.responses.create(model=TEXT, max_output_tokens=2, input=[
        {"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three"}])
    page = client.responses.input_items.list(made.id, limit=2, order="asc")
    assert page.has_more and len(page.data) == 2
    rest = client.responses.input_items.list(made.id, limit=2, order="asc",
                                             after=page.data[-1].id)
    texts = [item.content[0].text  # type: ignore[union-attr,index]
             for item in [*page.data, *rest.data]]
    assert texts == ["One", "Two", "Three"] and not rest.has_more
    newest = client.responses.input_items.list(made.id, limit=1)
    assert newest.data[0].content[0].text == "Three"  # type: ignore[union-attr,index]


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    made = client.responses.create(model=TEXT, input="Hi", max_output_tokens=2, store=False)
    assert made.store is False  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_another_key_can_neither_read_nor_chain_it(live: LiveServer,
                                                   client: openai.OpenAI) -> None:
    made = client.responses.create(model=TEXT, input="Hi", max_output_tokens=2)
    other = sdk(live, KEY_B)
    with pytest.raises(openai.NotFoundError) as missing:
        other.responses.retrieve(made.id)
    assert missing.value.code == "not_found"
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError) as refused:
        other.responses.create(model=TEXT, input="Again", previous_response_id=made.id,
                               max_output_tokens=2)
    assert refused.value.code == "previous_response_not_found"
    assert client.responses.retrieve(made.id).id == made.id  # still there for its owner


def test_input_tokens_counts_what_create_reads(client: openai.OpenAI) -> None:
    counted = client.responses.input_tokens.count(model=TEXT, input="Hello there",
                                                  instructions="Be brief.")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 3
    made = client.responses.create(model=TEXT, input="Hello there", instructions="Be brief.",
                                   max_output_tokens=1)
    assert made.usage is not None and made.usage.input_tokens == counted.input_tokens


def test_an_unknown_previous_response_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=TEXT, input="Hi", previous_response_id="resp_nope")
    assert refused.value.code == "previous_response_not_found"
    assert refused.value.param == "previous_response_id"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "param", "needle"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
    ({"tools": [WEATHER, {"type": "code_interpreter", "container": {"type": "auto"}}]},
     "tools[1].type", "code_interpreter"),
    ({"temperature": 5}, "temperature", "temperature"),
    ({"truncation": "auto"}, "truncation", "truncation"),
    ({"include": ["reasoning.encrypted_content"]}, "include", "reasoning.encrypted_content"),
    ({"conversation": "conv_1"}, "conversation", "conversation"),
    ({"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0].type", "input_file"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "item_reference"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "role"),
    ({"input": []}, "input", "empty"),
    ({"max_output_tokens": 100_000}, "max_output_tokens", "context"),
    ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
     "tool_choice.name", "nope"),
    ({"reasoning": {"summary": "auto"}}, "reasoning.summary", "summar"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format", "schema"),
])
def test_bad_requests_are_400s_in_openais_envelope(live: LiveServer, body: dict[str, Any],
                                                   param: str, needle: str) -> None:
    resp = post(live, {"model": TEXT, "input": "Hi", "max_output_tokens": 2, **body})
    error = assert_openai_error(resp, 400, param=param)
    assert needle in error["message"], error


def test_stored_reads_refuse_what_they_cannot_do(live: LiveServer,
                                                client: openai.OpenAI) -> None:
    made = client.responses.create(model=TEXT, input="Hi", max_output_tokens=2)
    auth = {"Authorization": f"Bearer {KEY_A}"}
    for query, param in (("stream=true", "stream"), ("include=file_search_call.results",
                                                     "include")):
        resp = httpx.get(f"{live.url}/v1/responses/{made.id}?{query}", headers=auth)
        assert_openai_error(resp, 400, param=param)
    resp = httpx.get(f"{live.url}/v1/responses/{made.id}/input_items?after=nope", headers=auth)
    assert_openai_error(resp, 400, param="after")
