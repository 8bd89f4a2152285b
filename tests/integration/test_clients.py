"""The agent libraries the issue names work unchanged against the server: LangChain's
`bind_tools` and `with_structured_output`, instructor in tools and JSON modes."""

from __future__ import annotations

from typing import Annotated

import instructor
import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.conftest import CHAT_MODEL, LiveServer

# Bounded fields: a 135M model may otherwise write one until max_tokens.
Short = Annotated[str, Field(max_length=16)]


class City(BaseModel):
    """A city and its country."""

    name: Short
    country: Short
    population: int = Field(ge=0, le=50_000_000)


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"18 degrees in {city}"


def chat_model(server: LiveServer) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused",  # type: ignore[arg-type]
                      model=CHAT_MODEL, temperature=0, max_tokens=200, max_retries=0)


def test_langchain_bind_tools_returns_a_tool_call(server: LiveServer) -> None:
    bound = chat_model(server).bind_tools([get_weather], tool_choice="get_weather")
    answer = bound.invoke("What is the weather in Paris?")
    assert len(answer.tool_calls) == 1
    call = answer.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_with_structured_output(server: LiveServer, method: str) -> None:
    if method == "json_mode":  # the schema reaches the model only through the prompt
        structured = chat_model(server).with_structured_output(City, method=method,
                                                               include_raw=True)
        raw = structured.invoke("Describe Paris as JSON with name, country and population.")
        assert isinstance(raw, dict) and raw["raw"].content.lstrip().startswith("{")
        return
    city = chat_model(server).with_structured_output(City, method=method).invoke(
        "Describe Paris.")
    assert isinstance(city, City)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
def test_instructor_modes(server: LiveServer, mode: instructor.Mode) -> None:
    client = instructor.from_openai(
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0), mode=mode)
    city = client.chat.completions.create(
        model=CHAT_MODEL, response_model=City, max_retries=0, max_tokens=200, temperature=0,
        messages=[{"role": "user", "content": "Describe Paris."}])
    assert isinstance(city, City)
