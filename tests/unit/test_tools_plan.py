"""Tool requests before any model: templates that render tools are told apart from those that
do not, the latter get tools and calls written into the messages, and a forced call's grammar
accepts exactly a call to an offered tool with arguments that fit its schema."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from modelserve.api.chat import chat_turn
from modelserve.api.errors import APIError
from modelserve.api.protocol import ChatCompletionRequest
from modelserve.chat.tools import plan_tools, without_tool_template
from modelserve.chat.turn import Turn
from modelserve.runtimes.chat_template import ChatTemplate

WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}
TOOL_TEMPLATE = ("{% if tools %}{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% endif %}"
                 "{% for m in messages %}{{ m.role }}:{{ m.content }}"
                 "{% for c in m.tool_calls or [] %}{{ c.function.arguments.city }}{% endfor %}|"
                 "{% endfor %}")
PLAIN_TEMPLATE = "{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}"


def request(**fields: Any) -> Turn:
    return chat_turn(ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}))


def test_a_template_that_renders_tools_is_told_apart() -> None:
    def no_builtin(pairs: list[tuple[str, str]]) -> str | None:
        return None

    with_tools = ChatTemplate(TOOL_TEMPLATE, "", "", no_builtin)
    assert with_tools.supports_tools
    assert not ChatTemplate(PLAIN_TEMPLATE, "", "", no_builtin).supports_tools
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather",
                                                     "arguments": {"city": "Oslo"}}}]}
    assert with_tools.render([call], tools=[WEATHER]) == "[get_weather]assistant:Oslo|"


def test_without_a_tool_template_tools_and_calls_go_into_the_messages() -> None:
    call = {"id": "c", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    out = without_tool_template([
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "5C", "tool_call_id": "c"}], [WEATHER])
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.\n\n# Tools")
    assert json.dumps(WEATHER) in out[0]["content"]
    assert out[1] == {"role": "assistant", "content": '<tool_call>\n{"name": "get_weather", '
                      '"arguments": {"city": "Oslo"}}\n</tool_call>'}
    assert out[2] == {"role": "user", "content": "<tool_response>\n5C\n</tool_response>"}


def test_plans() -> None:
    assert plan_tools(request()) is None
    assert plan_tools(request(tools=[WEATHER], tool_choice="none")) is None
    auto = plan_tools(request(tools=[WEATHER]))
    # auto: free until a call begins (a lazy rule at the spelled `<tool_call>`)
    assert auto is not None and not auto.forced and "head[lazy]" in auto.grammar(False)
    named = plan_tools(request(tools=[WEATHER], tool_choice={
        "type": "function", "function": {"name": "get_weather"}}))
    assert named is not None and [f.name for f in named.forced] == ["get_weather"]
    assert not named.parallel


@pytest.mark.parametrize(("fields", "param"), [
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
     "tool_choice.function.name"),
])
def test_bad_plans_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as refused:
        plan_tools(request(**fields))
    assert refused.value.param == param


@pytest.fixture(scope="module")
def smollm2() -> Iterator[tuple[Any, Any]]:
    """SmolLM2's vocabulary and its llguidance tokenizer (built once: ~0.2 s, and llguidance
    calls a deprecated llama-cpp-python function once per token)."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    from modelserve.runtimes.llama_cpp import LlamaModel
    from modelserve.sources import PackageSource
    from tests.conftest import SMOLLM2

    model = LlamaModel(PackageSource(**SMOLLM2).resolve(), vocab_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tokenizer = lltokenizer_from_vocab(model.vocab_handle)
    yield model, tokenizer
    model.close()


@pytest.mark.parametrize(("text", "ok"), [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', True),
    ('<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>', False),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"town": "Oslo"}}\n</tool_call>', False),
    ("Sure, the weather:", False),
])
def test_the_forced_grammar_takes_a_valid_call_and_nothing_else(
        smollm2: tuple[Any, Any], text: str, ok: bool) -> None:
    from llguidance import LLMatcher

    model, tokenizer = smollm2
    plan = plan_tools(request(tools=[WEATHER], tool_choice="required"))
    assert plan is not None and not plan.parallel
    grammar = plan.grammar(special_tokens=False)
    assert grammar is not None
    matcher = LLMatcher(tokenizer, grammar, log_level=0)
    consumed = all(matcher.consume_token(t) for t in model.tokenize(text, add_special=False))
    assert (consumed and matcher.is_accepting()) == ok
