"""Structured outputs through HTTP on SmolLM2: response_format, grammar and json_schema
constrain the engine's sampling, so the output always parses and fits the schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import CHAT_MODEL
from tests.helpers import assert_openai_error


class Colour(StrEnum):
    red = "red"
    green = "green"
    blue = "blue"


# Bounded strings, numbers and lists: a 135M model may otherwise write one until max_tokens.
Short = Annotated[str, Field(max_length=16)]


class Address(BaseModel):
    city: Short
    number: int = Field(ge=0, le=9999)


class Person(BaseModel):
    name: Short
    age: int = Field(ge=0, le=120)
    favourite: Colour
    address: Address
    hobbies: list[Short] = Field(max_length=3)


ASK = [{"role": "user", "content": "Invent a person and describe them as JSON."}]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sdk_parse_returns_the_pydantic_object(client: openai.OpenAI, temperature: float) -> None:
    completion = client.chat.completions.parse(
        model=CHAT_MODEL, messages=ASK, response_format=Person, max_tokens=300,  # type: ignore[arg-type]
        temperature=temperature, seed=7)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    person = choice.message.parsed
    assert isinstance(person, Person) and isinstance(person.address, Address)
    assert person.favourite in Colour and len(person.hobbies) <= 3


def test_sdk_stream_with_a_schema_assembles_the_same_object(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model=CHAT_MODEL, messages=ASK,  # type: ignore[arg-type]
                                        response_format=Person, max_tokens=300,
                                        temperature=0) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.parsed
    plain = client.chat.completions.parse(model=CHAT_MODEL, messages=ASK,  # type: ignore[arg-type]
                                          response_format=Person, max_tokens=300,
                                          temperature=0).choices[0].message.parsed
    assert isinstance(streamed, Person) and streamed == plain


def test_json_object_is_a_json_object(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello as JSON."}],
        response_format={"type": "json_object"}, max_tokens=120, temperature=0)
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_completions_take_a_gbnf_grammar_and_a_json_schema(http: httpx.Client) -> None:
    yes_no = http.post("/v1/completions", json={
        "model": CHAT_MODEL, "prompt": "Is the sky blue? Answer:", "max_tokens": 8,
        "temperature": 1.0, "seed": 3, "grammar": 'root ::= " yes" | " no"'}).json()
    assert yes_no["choices"][0]["text"] in (" yes", " no")
    assert yes_no["choices"][0]["finish_reason"] == "stop"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    numbered = http.post("/v1/completions", json={
        "model": CHAT_MODEL, "prompt": "A number:", "max_tokens": 20, "temperature": 0,
        "json_schema": schema}).json()
    assert isinstance(json.loads(numbered["choices"][0]["text"])["n"], int)


BAD = [
    ({"response_format": {"type": "json_schema",
                          "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "response_format.json_schema"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"grammar": "root ::= ("}, "grammar"),
    ({"grammar": 'root ::= "a"', "json_schema": {"type": "object"}}, "json_schema"),
]


@pytest.mark.parametrize(("extra", "param"), BAD)
def test_bad_constraints_are_400s_naming_the_field(http: httpx.Client, extra: dict[str, Any],
                                                   param: str) -> None:
    body = {"model": CHAT_MODEL, "messages": ASK, "max_tokens": 4} | extra
    assert_openai_error(http.post("/v1/chat/completions", json=body), 400, param=param)


def test_16_concurrent_requests_mixing_free_text_and_schemas(
        async_client: Callable[[], openai.AsyncOpenAI]) -> None:
    async def one(i: int) -> None:
        client = async_client()
        if i % 2:
            parsed = await client.chat.completions.parse(
                model=CHAT_MODEL, messages=ASK, response_format=Person,  # type: ignore[arg-type]
                max_tokens=300, temperature=1.0, seed=i)
            assert isinstance(parsed.choices[0].message.parsed, Person)
        else:
            free = await client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Tell me a story."}],
                max_tokens=40, temperature=1.0, seed=i)
            assert free.choices[0].message.content

    async def all_of_them() -> None:
        await asyncio.gather(*(one(i) for i in range(16)))

    asyncio.run(all_of_them())


class City(BaseModel):  # no bounds at all: the grammar's own bound must end the integer
    name: str
    population: int


def test_an_unbounded_integer_ends_and_the_answer_parses(client: openai.OpenAI) -> None:
    """SmolLM2 at temperature 0 used to write `"population":1111…` until max_tokens."""
    completion = client.chat.completions.parse(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Describe Paris."}],
        response_format=City, max_tokens=200, temperature=0)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    city = choice.message.parsed
    assert isinstance(city, City) and abs(city.population) < 10**16
