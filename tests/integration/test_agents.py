"""Agent frameworks against real models: the OpenAI Agents SDK runs an agent with a function
tool and an `output_type` on Qwen2.5-Coder to completion. What makes it work: `auto` calls are
grammar-constrained once begun (a call names an offered tool, never the SDK's pydantic title
`add_args`), and structured output and tools go together in one request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from pydantic import BaseModel

from tests.conftest import LiveServer, serve

QWEN = "qwen"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path) -> Iterator[LiveServer]:
    set_tracing_disabled(True)  # the SDK would post traces to OpenAI's servers
    with serve(tmp_path_factory.mktemp("agents"), {"models": [
        {"name": QWEN, "source": str(qwen_gguf),
         "options": {"context_size": 4096, "parallel": 1, "batch_size": 256}},
    ]}) as server:
        yield server


class Sum(BaseModel):
    total: int


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_an_agent_with_a_tool_and_an_output_type_runs_to_completion(live: LiveServer,
                                                                    api: str) -> None:
    """Over Chat Completions and over the Responses API (the SDK's default model)."""
    added: list[tuple[int, int]] = []

    @function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        added.append((a, b))
        return a + b

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
        agent = Agent(name="calculator", tools=[add], output_type=Sum,
                      instructions="Add numbers with the add tool, then report the total.",
                      model=OpenAIChatCompletionsModel(model=QWEN, openai_client=client)
                      if api == "chat" else
                      OpenAIResponsesModel(model=QWEN, openai_client=client),
                      # The first turn must call (a 0.5B model may answer the JSON at once);
                      # the SDK resets tool_choice to auto after a tool ran.
                      model_settings=ModelSettings(temperature=0, max_tokens=200,
                                                   tool_choice="required"))
        return await Runner.run(agent, "What is 17 + 25?", max_turns=4)

    result = asyncio.run(run())
    assert added == [(17, 25)]
    assert isinstance(result.final_output, Sum) and result.final_output.total == 42


def test_an_auto_call_names_an_offered_tool(live: LiveServer) -> None:
    """The SDK's schema is titled `add_args`: unconstrained, Qwen wrote that as the name."""
    client = live.openai()
    tool = {"type": "function", "function": {
        "name": "add", "description": "Add two integers.", "parameters": {
            "title": "add_args", "type": "object", "additionalProperties": False,
            "properties": {"a": {"title": "A", "type": "integer"},
                           "b": {"title": "B", "type": "integer"}},
            "required": ["a", "b"]}}}
    answer = client.chat.completions.create(
        model=QWEN, temperature=0, max_tokens=100, tools=[tool],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What is 17 + 25? Use the tool."}])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    call = (choice.message.tool_calls or [])[0]
    assert call.function.name == "add"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"a": 17, "b": 25}  # type: ignore[union-attr]
