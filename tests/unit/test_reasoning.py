"""Reasoning split out of generated text: `<think>` blocks (or a block the prompt opened) go to
reasoning_content, the rest to content and tool calls, the same whole or in pieces of any
size; text without the markers is passed on unchanged."""

from __future__ import annotations

import asyncio
import json

import pytest

from modelserve.api.caching import replay_chat
from modelserve.api.protocol import ChatChoice, ChatCompletionResponse, Usage
from modelserve.api.reasoning import OutputParser, opens_thinking, parse_message
from modelserve.api.tool_parser import Event

NAMES = frozenset({"get_weather"})
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
# (text, tools, prompt opened <think>, reasoning, content, calls)
CASES: list[tuple[str, frozenset[str] | None, bool, str | None, str | None, list[str]]] = [
    ("<think>\nI should greet.\n</think>\n\nHello!", None, False, "I should greet.", "Hello!",
     []),
    ("  <think>a</think>b", None, False, "a", "b", []),
    ("The user asks.\n</think>\n\nHi", None, True, "The user asks.", "Hi", []),
    ("still thinking <", None, True, "still thinking <", None, []),
    ("<think>cut short", None, False, "cut short", None, []),
    (f"<think>Weather tool.</think>\n{CALL}", NAMES, False, "Weather tool.", None,
     ["get_weather"]),
    (f"<think>x</think> Checking. {CALL}", NAMES, False, "x", "Checking.", ["get_weather"]),
    ('<think>y</think>{"name": "get_weather", "parameters": {}}', NAMES, False, "y", None,
     ["get_weather"]),
    # No markers: nothing changes, leading whitespace and look-alikes included.
    ("  Hello <think> there", None, False, None, "  Hello <think> there", []),
    ("<thin", None, False, None, "<thin", []),
    ("<b>bold</b>", None, False, None, "<b>bold</b>", []),
    ("", None, False, None, "", []),
    ("Say </think> here", None, False, None, "Say </think> here", []),
]


def _feed(parser: OutputParser, text: str, step: int) -> list[Event]:
    events: list[Event] = []
    for i in range(0, len(text), step):
        events += parser.feed(text[i:i + step])
    return events + parser.finish()


@pytest.mark.parametrize(("text", "tools", "thinking", "reasoning", "content", "calls"), CASES)
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_whole_and_streamed_agree(text: str, tools: frozenset[str] | None, thinking: bool,
                                  reasoning: str | None, content: str | None, calls: list[str],
                                  step: int) -> None:
    message = parse_message(text, tools, thinking)
    assert (message.reasoning_content, message.content) == (reasoning, content)
    assert [c.function.name for c in message.tool_calls or []] == calls

    events = _feed(OutputParser(tools, thinking), text, step)
    assert "".join(e.reasoning for e in events if e.reasoning) == (reasoning or "")
    assert "".join(e.content for e in events if e.content) == (content or "")
    names = [e.call.function.name for e in events if e.call and e.call.id]
    assert names == calls
    # Reasoning comes before everything else.
    kinds = ["r" if e.reasoning else "o" for e in events]
    assert kinds == sorted(kinds, key=lambda k: k != "r")


def test_plain_text_goes_out_as_it_comes() -> None:
    """The stream's fast path depends on it: each piece of a plain answer comes back whole."""
    parser = OutputParser()
    for piece in ["Hello", " wor", "ld", "\n"]:
        assert [e.content for e in parser.feed(piece)] == [piece]


@pytest.mark.parametrize(("tail", "opened"), [("<|im_start|>assistant\n<think>\n", True),
                                              ("<think>\n\n</think>\n\n", False),
                                              ("<|im_start|>assistant\n", False)])
def test_a_prompt_that_opens_the_think_block(tail: str, opened: bool) -> None:
    assert opens_thinking(tail) is opened


def test_a_cached_answer_replays_its_reasoning_first() -> None:
    """The response cache streams a stored answer as the live stream sent it."""
    stored = ChatCompletionResponse(model="m", usage=Usage(prompt_tokens=1, completion_tokens=2,
                                                           total_tokens=3), choices=[ChatChoice(
        index=0, message=parse_message("<think>hm</think>Hi", None), finish_reason="stop")])

    async def deltas() -> list[dict[str, str]]:
        return [json.loads(c.removeprefix("data: "))["choices"][0]["delta"]
                async for c in replay_chat(stored.model_dump(mode="json"), False)
                if "[DONE]" not in c]

    assert asyncio.run(deltas()) == [{"role": "assistant", "content": ""},
                                     {"reasoning_content": "hm"}, {"content": "Hi"}, {}]
