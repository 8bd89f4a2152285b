"""The Responses surface without a model: the typed event stream (and the openai SDK's own
accumulator over it), items as the core's messages, and the store's owners and bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from modelserve.api.errors import APIError, model_unavailable
from modelserve.api.responses.convert import input_items, turn_of
from modelserve.api.responses.protocol import ResponsesRequest
from modelserve.api.responses.store import ResponseStore, Stored
from modelserve.api.responses.surface import ResponsesSurface
from modelserve.chat import events as ev
from modelserve.chat.route import Replay
from modelserve.chat.turn import ToolCall
from modelserve.config_sections import CacheSettings, ResponsesSettings


class Vocab:
    """The one thing the surface asks of the model: tokens of the reasoning text."""

    def tokenize(self, text: str, special: bool = False, add_special: bool = True
                 ) -> list[int]:
        return list(range(len(text.split())))


def result(reason: str = "tool_calls") -> ev.Result:
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    return ev.Result("abc", 1, "m", [ev.Choice(0, "Let me check.", "I should look it up",
                                               [call], reason)], ev.Usage(20, 12, 4))


def stream(surface: ResponsesSurface, source: Any) -> list[tuple[str, dict[str, Any]]]:
    async def collect() -> list[str]:
        return [chunk async for chunk in surface.stream(source, Vocab())]  # type: ignore[arg-type]

    out = []
    for chunk in asyncio.run(collect()):
        name, data = chunk.strip().split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def request(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "Hi", **fields})


def test_the_stream_is_typed_numbered_and_the_sdk_accumulates_it() -> None:
    events = stream(ResponsesSurface(request(), {}, None), Replay(result()))
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    for _, data in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=data))  # type: ignore
    final = state._completed_response
    assert final is not None and final.output_text == "Let me check."
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "I should look it up"
    assert message.type == "message" and call.type == "function_call"
    assert call.call_id == "call_1" and json.loads(call.arguments) == {"city": "Paris"}
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 5
    assert final.usage.input_tokens_details.cached_tokens == 4


def test_the_whole_answer_has_the_streams_items() -> None:
    surface = ResponsesSurface(request(), {}, None)
    body = json.loads(surface.answer(result(), Vocab()))  # type: ignore[arg-type]
    streamed = stream(ResponsesSurface(request(), {}, None), Replay(result()))[-1][1]
    strip = [{k: v for k, v in item.items() if k != "id"} for item in body["output"]]
    assert strip == [{k: v for k, v in item.items() if k != "id"}
                     for item in streamed["response"]["output"]]
    assert body["status"] == "completed" and body["incomplete_details"] is None
    cut = json.loads(surface.answer(result("length"), Vocab()))  # type: ignore[arg-type]
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("reasoning", [None, "hmm"])
def test_an_answer_of_no_text_is_one_empty_message_either_way(reasoning: str | None) -> None:
    empty = ev.Result("abc", 1, "m", [ev.Choice(0, None, reasoning, [], "stop")],
                      ev.Usage(5, 1))
    body = json.loads(ResponsesSurface(request(), {}, None).answer(empty, Vocab()))  # type: ignore[arg-type]
    streamed = stream(ResponsesSurface(request(), {}, None), Replay(empty))[-1][1]["response"]
    for output in (body["output"], streamed["output"]):
        assert [i["type"] for i in output] == ["reasoning"] * bool(reasoning) + ["message"]
        assert output[-1]["content"] == [{"type": "output_text", "text": "", "annotations": [],
                                          "logprobs": []}]


class Failing:
    id, created, model = "x", 1, "m"
    usage = ev.Usage(3, 1)

    async def events(self) -> AsyncIterator[ev.Event]:
        yield ev.TextDelta(0, "Hel")
        raise model_unavailable("its worker died")


def test_a_failure_mid_stream_is_response_failed() -> None:
    events = stream(ResponsesSurface(request(), {}, None), Failing())
    name, data = events[-1]
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert data["response"]["error"]["code"] == "model_unavailable"
    assert not any("error" in d and d["type"] != "response.failed" for _, d in events)


def test_items_become_the_cores_messages() -> None:
    req = request(instructions="Be brief.", input=[
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"}])
    items = input_items(req)
    assert all(item["id"] for item in items)
    turn = turn_of(req, [(item, f"input[{i}]") for i, item in enumerate(items)])
    roles = [(m.role, m.content) for m in turn.messages]
    assert roles == [("system", "Be brief."), ("system", "Use tools."), ("user", "Weather?"),
                     ("assistant", "Checking."), ("tool", "sunny")]
    assert turn.messages[3].tool_calls[0].name == "get_weather"
    assert turn.messages[4].name == "get_weather" and turn.messages[4].tool_call_id == "c1"


def test_an_image_part_is_an_image() -> None:
    req = request(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}])
    turn = turn_of(req, [(i, f"input[{n}]") for n, i in enumerate(input_items(req))])
    (image,) = turn.images()
    assert image.url.startswith("data:image/png") and image.where == "input[0].content[1].image_url"


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "message", "role": "user", "content": [{"type": "input_audio"}]},
     "input[0].content[0].type"),
    ({"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "f"}]},
     "input[0].content[0].file_id"),
    ({"type": "function_call", "call_id": "c", "name": "f"}, "input[0].arguments"),
    ({"type": "web_search_call", "id": "w"}, "input[0].type"),
])
def test_items_it_cannot_take_are_refused_by_name(item: dict[str, Any], param: str) -> None:
    req = request(input=[item])
    with pytest.raises(APIError) as refused:
        turn_of(req, [(i, f"input[{n}]") for n, i in enumerate(input_items(req))])
    assert refused.value.status == 400 and refused.value.param == param


def test_the_store_keeps_each_owners_own_and_is_bounded() -> None:
    async def run() -> None:
        store = ResponseStore(ResponsesSettings(max_stored=2), CacheSettings())
        for n in range(3):
            await store.put(Stored("a", {"id": f"resp_{n}", "output": []}, []))
        assert await store.get("resp_0", "a") is None  # the least recently used went out
        assert await store.get("resp_2", "a") is not None
        assert await store.get("resp_2", "b") is None
        assert not await store.delete("resp_2", "b")
        assert await store.delete("resp_2", "a") and await store.get("resp_2", "a") is None

    asyncio.run(run())


def test_a_drained_stream_ends_with_the_responses_error_event() -> None:
    from modelserve.api.app import install_error_shapes
    from modelserve.api.errors import shape_for

    install_error_shapes()
    end = shape_for("/v1/responses").stream_end(model_unavailable("shutting down"))
    name, data = end.strip().split("\n")
    assert name == "event: error" and "[DONE]" not in end
    assert json.loads(data.removeprefix("data: "))["code"] == "model_unavailable"
