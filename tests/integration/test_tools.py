"""Tool calling through HTTP with the official SDK: a forced call (required or named) is
grammar-constrained, so even SmolLM2, whose template knows no tools, makes a valid one; Qwen
(tools in its own template) picks a tool by itself, takes a tool result back, and streams its
calls as deltas that reassemble to the non-streamed call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import CHAT_MODEL, serve
from tests.helpers import assert_openai_error

QWEN_MODEL = "qwen"


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    model_config = ConfigDict(extra="forbid")
    # Bounded: a 135M model may otherwise write one string until max_tokens.
    city: str = Field(max_length=24)
    unit: Literal["celsius", "fahrenheit"]


class GetTime(BaseModel):
    """Get the current time in a timezone."""

    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(max_length=24)


ARGS: dict[str, type[BaseModel]] = {"get_weather": GetWeather, "get_time": GetTime}
TOOLS: list[Any] = [openai.pydantic_function_tool(GetWeather, name="get_weather"),
                    openai.pydantic_function_tool(GetTime, name="get_time")]
PARIS: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]


def valid_calls(answer: ChatCompletion) -> list[tuple[str, BaseModel]]:
    """The answer's calls, each argument string validated against its tool's schema."""
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls or []
    assert calls and all(c.id.startswith("call_") and c.type == "function" for c in calls)
    assert "<tool_call>" not in (choice.message.content or "")
    return [(c.function.name, ARGS[c.function.name].model_validate_json(c.function.arguments))
            for c in calls]  # type: ignore[union-attr]


def streamed(client: openai.OpenAI, **kwargs: Any) -> tuple[str, list[dict[str, str]], str]:
    """Content, calls (reassembled from their deltas) and finish reason of a stream."""
    content, calls, finish = "", [], ""
    chunks: Iterator[ChatCompletionChunk] = client.chat.completions.create(stream=True, **kwargs)
    for chunk in chunks:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                if delta.index == len(calls):  # the first delta of a call says who it is
                    assert delta.id and delta.type == "function" and delta.function
                    assert delta.function.name and delta.function.arguments == ""
                    calls.append({"name": delta.function.name, "arguments": ""})
                else:
                    assert delta.id is None and delta.function and not delta.function.name
                calls[delta.index]["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    return content, calls, finish


def as_dicts(answer: ChatCompletion) -> list[dict[str, str]]:
    return [{"name": c.function.name, "arguments": c.function.arguments}  # type: ignore[union-attr]
            for c in answer.choices[0].message.tool_calls or []]


# -- SmolLM2: its template has no tools, the grammar makes the call --------------------------


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_required_makes_valid_calls_on_a_model_without_a_tool_template(
        client: openai.OpenAI, temperature: float) -> None:
    answer = client.chat.completions.create(
        model=CHAT_MODEL, messages=PARIS, tools=TOOLS, tool_choice="required", max_tokens=200,
        temperature=temperature, seed=5)
    assert all(name in ARGS for name, _ in valid_calls(answer))
    assert answer.choices[0].message.content is None


def test_a_named_tool_is_the_one_called(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=CHAT_MODEL, messages=PARIS, tools=TOOLS, max_tokens=200, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = valid_calls(answer)
    assert len(calls) == 1 and calls[0][0] == "get_time"


def test_a_forced_call_streams_as_the_same_call(client: openai.OpenAI) -> None:
    ask: dict[str, Any] = {"model": CHAT_MODEL, "messages": PARIS, "tools": TOOLS,
                           "tool_choice": "required", "max_tokens": 200, "temperature": 0}
    content, calls, finish = streamed(client, **ask)
    assert (content, finish) == ("", "tool_calls")
    assert calls == as_dicts(client.chat.completions.create(**ask))



def test_sdk_parse_and_stream_give_parsed_arguments(client: openai.OpenAI) -> None:
    """The SDK's helpers validate strict tools' arguments into their pydantic models."""
    ask: dict[str, Any] = {"model": CHAT_MODEL, "messages": PARIS, "tools": TOOLS,
                           "max_tokens": 200, "temperature": 0,
                           "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    parsed = client.chat.completions.parse(**ask).choices[0].message.tool_calls or []
    with client.chat.completions.stream(**ask) as stream:
        final = stream.get_final_completion().choices[0].message.tool_calls or []
    assert len(parsed) == 1 and isinstance(parsed[0].function.parsed_arguments, GetWeather)
    assert [c.function.parsed_arguments for c in final] == [parsed[0].function.parsed_arguments]

BAD: list[tuple[dict[str, Any], str]] = [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "nonsense"}}}]}, "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]},
     "tools[0].function.name"),
    ({"messages": [*PARIS, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                          "arguments": "{city: Paris"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [*PARIS, {"role": "tool", "content": "18C"}]}, "messages[1].tool_call_id"),
    ({"functions": [{"name": "f"}]}, "functions"),
]


@pytest.mark.parametrize(("extra", "param"), BAD)
def test_bad_tool_requests_are_400s_naming_the_field(http: httpx.Client, extra: dict[str, Any],
                                                     param: str) -> None:
    body = {"model": CHAT_MODEL, "messages": PARIS, "max_tokens": 4} | extra
    assert_openai_error(http.post("/v1/chat/completions", json=body), 400, param=param)


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=CHAT_MODEL, messages=PARIS, tools=TOOLS,
                                            tool_choice="none", max_tokens=16, temperature=0)
    choice = answer.choices[0]
    assert choice.message.content and not choice.message.tool_calls
    assert choice.finish_reason in ("stop", "length")



def test_16_concurrent_requests_mixing_free_text_schemas_and_tools(
        async_client: Callable[[], openai.AsyncOpenAI]) -> None:
    """Each sequence samples under its own grammar (or none) in the same batches."""
    async def one(i: int) -> None:
        client = async_client()
        if i % 3 == 0:
            answer = await client.chat.completions.create(
                model=CHAT_MODEL, messages=PARIS, tools=TOOLS, tool_choice="required",
                max_tokens=200, temperature=1.0, seed=i)
            valid_calls(answer)
        elif i % 3 == 1:
            parsed = await client.chat.completions.parse(
                model=CHAT_MODEL, messages=PARIS, response_format=GetWeather,
                max_tokens=200, temperature=1.0, seed=i)
            assert isinstance(parsed.choices[0].message.parsed, GetWeather)
        else:
            free = await client.chat.completions.create(
                model=CHAT_MODEL, messages=PARIS, max_tokens=30, temperature=1.0, seed=i)
            assert free.choices[0].message.content and not free.choices[0].message.tool_calls

    async def all_of_them() -> None:
        await asyncio.gather(*(one(i) for i in range(16)))

    asyncio.run(all_of_them())

# -- Qwen2.5-Coder: tools through its own template ------------------------------------------


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path) -> Iterator[openai.OpenAI]:
    with serve(tmp_path_factory.mktemp("tools"), {"models": [
        {"name": QWEN_MODEL, "source": str(qwen_gguf),
         "options": {"context_size": 2048, "parallel": 1, "batch_size": 256}},
    ]}) as live:
        yield live.openai()


def test_auto_picks_the_tool_the_question_needs(qwen: openai.OpenAI) -> None:
    answer = qwen.chat.completions.create(model=QWEN_MODEL, messages=PARIS, tools=TOOLS,
                                          max_tokens=100, temperature=0)
    calls = answer.choices[0].message.tool_calls or []
    assert answer.choices[0].finish_reason == "tool_calls", answer
    assert [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert "paris" in json.loads(calls[0].function.arguments)["city"].lower()  # type: ignore[union-attr]
    assert answer.choices[0].message.content is None


def test_a_tool_result_round_trips_to_a_text_answer(qwen: openai.OpenAI) -> None:
    first = qwen.chat.completions.create(model=QWEN_MODEL, messages=PARIS, tools=TOOLS,
                                         max_tokens=100, temperature=0,
                                         tool_choice={"type": "function",
                                                      "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    history: list[Any] = [
        *PARIS, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id,
         "content": json.dumps({"temperature": 18, "unit": "celsius", "sky": "sunny"})},
        {"role": "user", "content": "Answer in one sentence with the temperature."}]
    # `none` and a nudge: left to choose, the 0.5B model asks for the same weather again, as a
    # bare JSON call (which the parser once took for text); the point: the result reaches it.
    second = qwen.chat.completions.create(model=QWEN_MODEL, messages=history, tools=TOOLS,
                                          tool_choice="none", max_tokens=80, temperature=0)
    choice = second.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls, choice
    assert "18" in (choice.message.content or "")


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
def test_streamed_deltas_reassemble_to_the_non_streamed_call(qwen: openai.OpenAI,
                                                             tool_choice: str) -> None:
    ask: dict[str, Any] = {"model": QWEN_MODEL, "messages": PARIS, "tools": TOOLS,
                           "tool_choice": tool_choice, "max_tokens": 100, "temperature": 0}
    content, calls, finish = streamed(qwen, **ask)
    plain = qwen.chat.completions.create(**ask)
    assert (content, finish) == ("", "tool_calls")
    assert calls == as_dicts(plain) and calls
    valid_calls(plain)


def test_parallel_calls_when_asked_for(qwen: openai.OpenAI) -> None:
    answer = qwen.chat.completions.create(
        model=QWEN_MODEL, tools=TOOLS, tool_choice="required", parallel_tool_calls=True,
        max_tokens=200, temperature=0,
        messages=[{"role": "user", "content": "What's the weather in Paris and in Rome?"}])
    calls = valid_calls(answer)
    assert 1 <= len(calls) <= 4 and {name for name, _ in calls} <= set(ARGS)


def test_models_say_how_tools_reach_them(qwen: openai.OpenAI, client: openai.OpenAI) -> None:
    assert getattr(qwen.models.retrieve(QWEN_MODEL), "tools", None) == "template"
    assert getattr(client.models.retrieve(CHAT_MODEL), "tools", None) == "system_prompt"


class Forecast(BaseModel):
    city: Annotated[str, Field(max_length=16)]
    degrees: int = Field(ge=-50, le=60)
    sky: Literal["sunny", "cloudy", "rainy"]


def test_qwen_parses_structured_output_streamed_and_not(qwen: openai.OpenAI) -> None:
    ask: dict[str, Any] = {"model": QWEN_MODEL, "messages": PARIS, "max_tokens": 120,
                           "temperature": 0, "response_format": Forecast}
    parsed = qwen.chat.completions.parse(**ask).choices[0].message.parsed
    with qwen.chat.completions.stream(**ask) as stream:
        streamed = stream.get_final_completion().choices[0].message.parsed
    assert isinstance(parsed, Forecast) and streamed == parsed
