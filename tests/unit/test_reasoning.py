"""Reasoning split out of generated text: `<think>` blocks (or a block the prompt opened) go to
reasoning_content, the rest to content and tool calls, the same whole or in pieces of any
size; text without the markers is passed on unchanged."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest

from modelserve.api.chat import ChatSurface
from modelserve.api.protocol import ChatCompletionRequest
from modelserve.chat.events import CallStart, Choice, ReasoningDelta, Result, TextDelta, Usage
from modelserve.chat.reasoning import OutputParser, opens_thinking, parse_answer
from modelserve.chat.route import Replay
from modelserve.chat.tool_parser import Event

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
    answer = parse_answer(text, tools, thinking)
    assert (answer.reasoning, answer.content) == (reasoning, content)
    assert [c.name for c in answer.tool_calls] == calls

    events = _feed(OutputParser(tools, thinking), text, step)
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == (reasoning or "")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (content or "")
    assert [e.name for e in events if isinstance(e, CallStart)] == calls
    # Reasoning comes before everything else.
    kinds = ["r" if isinstance(e, ReasoningDelta) else "o" for e in events]
    assert kinds == sorted(kinds, key=lambda k: k != "r")


def test_plain_text_goes_out_as_it_comes() -> None:
    """The stream's fast path depends on it: each piece of a plain answer comes back whole."""
    parser = OutputParser()
    for piece in ["Hello", " wor", "ld", "\n"]:
        assert [cast(TextDelta, e).text for e in parser.feed(piece)] == [piece]


@pytest.mark.parametrize(("tail", "opened"), [("<|im_start|>assistant\n<think>\n", True),
                                              ("<think>\n\n</think>\n\n", False),
                                              ("<|im_start|>assistant\n", False)])
def test_a_prompt_that_opens_the_think_block(tail: str, opened: bool) -> None:
    assert opens_thinking(tail) is opened


def test_a_cached_answer_replays_its_reasoning_first() -> None:
    """The response cache streams a stored answer as the live stream sent it."""
    answer = parse_answer("<think>hm</think>Hi", None)
    stored = Result("abc", 0, "m", [Choice(0, answer.content, answer.reasoning, [], "stop")],
                    Usage(1, 2))
    surface = ChatSurface(ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}))

    async def deltas() -> list[dict[str, Any]]:
        return [json.loads(c.removeprefix("data: "))["choices"][0]["delta"]
                async for c in surface.stream(Replay(stored), cast(Any, None))
                if "[DONE]" not in c]

    assert asyncio.run(deltas()) == [{"role": "assistant", "content": ""},
                                     {"reasoning_content": "hm"}, {"content": "Hi"}, {}]
