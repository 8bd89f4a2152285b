"""Reasoning through HTTP. None of our models thinks by itself, so a GBNF grammar makes SmolLM2
write the shape a reasoning model writes: a `<think>` block, then the answer (or a tool call).
A second SmolLM2 gets a template that reads `reasoning_effort` and `enable_thinking` and, when
asked to think, opens the think block in the prompt as Qwen3's and DeepSeek-R1's do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL, SMOLLM2, LiveServer, serve
from tests.helpers import THINK_THEN_ANSWER, assert_openai_error

USER: list[Any] = [{"role": "user", "content": "Say hello."}]
OPENED_THEN_ANSWER = 'root ::= [a-z ]{1,40} "</think>" [A-Za-z ]{1,40}'
CALL = ('<tool_call>\\n{\\"name\\": \\"get_weather\\", \\"arguments\\": '
        '{\\"city\\": \\"Paris\\"}}\\n</tool_call>')
THINK_THEN_CALL = f'root ::= "<think>" [a-z ]{{1,40}} "</think>\\n{CALL}"'
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]
THINKER = "smollm2-thinker"
# ChatML, plus what reasoning templates read (trim_blocks: a newline after a tag is dropped).
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% if reasoning_effort %}Think {{ reasoning_effort }}ly.\n{% endif %}"
            "{% if enable_thinking %}<think>\n{% endif %}{% endif %}")


def ask(client: openai.OpenAI, model: str, grammar: str, tools: list[Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    """The non-streamed message, checked against the streamed one its deltas reassemble to."""
    body: dict[str, Any] = {"model": model, "messages": USER, "max_tokens": 120,
                            "temperature": 0, "extra_body": {"grammar": grammar, **extra}}
    if tools is not None:
        body["tools"] = tools
    answer = client.chat.completions.create(**body)
    message = answer.choices[0].message.model_dump()
    streamed: dict[str, Any] = {"reasoning_content": "", "content": "", "calls": []}
    order = []
    for chunk in client.chat.completions.create(stream=True, **body):
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            for key in ("reasoning_content", "content"):
                if delta.get(key):
                    streamed[key] += delta[key]
                    order.append(key)
            for call in delta.get("tool_calls") or []:
                if call["id"]:
                    streamed["calls"].append({"name": call["function"]["name"],
                                              "arguments": ""})
                    order.append("calls")
                streamed["calls"][call["index"]]["arguments"] += call["function"]["arguments"]
            streamed["finish"] = choice.finish_reason or streamed.get("finish")
    calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
             for c in message.get("tool_calls") or []]
    assert streamed == {"reasoning_content": message.get("reasoning_content") or "",
                        "content": message["content"] or "", "calls": calls,
                        "finish": answer.choices[0].finish_reason}
    # Thoughts stream first, as they were written.
    assert order == sorted(order, key=lambda k: k != "reasoning_content")
    return {**message, "finish": answer.choices[0].finish_reason}


def test_think_block_goes_to_reasoning_content(client: openai.OpenAI) -> None:
    message = ask(client, CHAT_MODEL, THINK_THEN_ANSWER)
    assert message["reasoning_content"] and message["content"]
    assert "think>" not in message["reasoning_content"] + message["content"]


def test_reasoning_then_a_tool_call(client: openai.OpenAI) -> None:
    message = ask(client, CHAT_MODEL, THINK_THEN_CALL, tools=TOOLS)
    assert message["reasoning_content"] and message["content"] is None
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]
    assert message["finish"] == "tool_calls"


def test_no_markers_no_reasoning(client: openai.OpenAI) -> None:
    """A `</think>` the prompt did not open is text like any other."""
    message = ask(client, CHAT_MODEL, OPENED_THEN_ANSWER)
    assert message.get("reasoning_content") is None and "</think>" in message["content"]


@pytest.mark.parametrize("extra", [{"reasoning_effort": "low"},
                                   {"chat_template_kwargs": {"enable_thinking": True}}])
def test_reasoning_fields_are_accepted(http: httpx.Client, extra: dict[str, Any]) -> None:
    body = {"model": CHAT_MODEL, "messages": USER, "max_tokens": 4} | extra
    assert http.post("/v1/chat/completions", json=body).status_code == 200


@pytest.mark.parametrize(("extra", "param"), [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": 2}, "reasoning_effort"),
    ({"chat_template_kwargs": "enable_thinking"}, "chat_template_kwargs"),
    ({"chat_template_kwargs": [1]}, "chat_template_kwargs"),
    ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
])
def test_bad_reasoning_fields_are_400s_naming_the_field(http: httpx.Client,
                                                        extra: dict[str, Any],
                                                        param: str) -> None:
    body = {"model": CHAT_MODEL, "messages": USER, "max_tokens": 4} | extra
    assert_openai_error(http.post("/v1/chat/completions", json=body), 400, param=param)


# -- a template that reads the variables and opens the think block -------------------------


@pytest.fixture(scope="module")
def thinker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("thinker"), {"models": [
        {"name": THINKER, "source": SMOLLM2,
         "options": {"context_size": 512, "parallel": 2, "chat_template": TEMPLATE}},
    ]}) as server:
        yield server


def test_variables_reach_the_template(thinker: LiveServer) -> None:
    def prompt_tokens(**extra: Any) -> int:
        answer = thinker.openai().chat.completions.create(
            model=THINKER, messages=USER, max_tokens=1, extra_body=extra)
        assert answer.usage is not None
        return answer.usage.prompt_tokens

    plain = prompt_tokens()
    assert prompt_tokens(reasoning_effort="high") > plain
    assert prompt_tokens(chat_template_kwargs={"enable_thinking": True}) > plain


def test_a_think_block_the_template_opened(thinker: LiveServer) -> None:
    message = ask(thinker.openai(), THINKER, OPENED_THEN_ANSWER,
                  chat_template_kwargs={"enable_thinking": True})
    assert message["reasoning_content"] and message["content"]
    assert "</think>" not in message["content"]
