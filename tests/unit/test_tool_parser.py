"""The tool-call parser: calls and content out of generated text, the same whether the text
comes whole or in pieces of any size (so streamed deltas reassemble to the non-streamed call)."""

from __future__ import annotations

import pytest

from modelserve.chat.events import CallArguments, CallStart, TextDelta
from modelserve.chat.tool_parser import ToolCallParser

NAMES = frozenset({"get_weather", "f"})
TWO_CALLS = ('Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa\\"ris}", '
             '"n": [1, {"a": 2}]}}\n</tool_call>\n<tool_call>\n{"arguments": {"x": 1}, '
             '"name": "f"}\n</tool_call>')
CASES = [
    (TWO_CALLS, "Sure.", [("get_weather", '{"city":"Pa\\"ris}","n":[1,{"a":2}]}'),
                          ("f", '{"x":1}')]),
    # Qwen2.5-Coder's own habit when not constrained: an indented ```json block.
    ('```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```',
     None, [("get_weather", '{"city":"Paris"}')]),
    ('Here:\n```json\n{"a": 1}\n```\nbye', 'Here:\n```json\n{"a": 1}\n```\nbye', []),
    ('```json\n{"name": "other", "arguments": {}}\n```',
     '```json\n{"name": "other", "arguments": {}}\n```', []),
    ("```python\nprint(1)\n```", "```python\nprint(1)\n```", []),
    ("x <tool_call>not json</tool_call> y", "x <tool_call>not json</tool_call> y", []),
    ("hello <tool", "hello <tool", []),
    # Llama 3.x: the whole answer is one JSON call with "parameters", maybe after its tag.
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', None,
     [("get_weather", '{"city":"Paris"}')]),
    (' <|python_tag|>{"name": "f", "parameters": {"x": "}"}}', None, [("f", '{"x":"}"}')]),
    ('{"name": "other", "parameters": {}}', '{"name": "other", "parameters": {}}', []),
    ('{"answer": 42}', '{"answer": 42}', []),
    # Only as the whole answer: Qwen quotes a call, then the tool's result.
    ('{"name": "f", "arguments": {}}\n{"t": 18}', '{"name": "f", "arguments": {}}\n{"t": 18}',
     []),
    ('{"name": "f", "arguments": {"x": 1}}\n', None, [("f", '{"x":1}')]),
    ('Use {"name": "f", "parameters": {}}', 'Use {"name": "f", "parameters": {}}', []),
    ('{"name": "f", "parameters": {"x"', '{"name": "f", "parameters": {"x"', []),
    ("<|python", "<|python", []),
    # Mistral: a list of calls after [TOOL_CALLS].
    ('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}, '
     '{"name": "f", "arguments": {}}]', None,
     [("get_weather", '{"city":"Oslo"}'), ("f", "{}")]),
    ('Ok [TOOL_CALLS][{"name": "f", "arguments": {"a": [1]}}]', "Ok", [("f", '{"a":[1]}')]),
    ('[TOOL_CALLS] [{"name": "other", "arguments": {}}]',
     '[TOOL_CALLS] [{"name": "other", "arguments": {}}]', []),
    ("[TOOL_CALLS] [{", "[TOOL_CALLS] [{", []),
    ("a [TOOL", "a [TOOL", []),
]


def parse_whole(text: str) -> ToolCallParser:
    parser = ToolCallParser(NAMES)
    parser.feed(text)
    parser.finish()
    return parser


@pytest.mark.parametrize(("text", "content", "calls"), CASES)
@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_whole_and_streamed_agree(text: str, content: str | None,
                                  calls: list[tuple[str, str]], step: int) -> None:
    whole_content, whole_calls = parse_whole(text).result()
    assert whole_content == content
    assert [(c.name, c.arguments) for c in whole_calls] == calls
    assert all(c.id.startswith("call_") for c in whole_calls)

    parser, events = ToolCallParser(NAMES), []
    for i in range(0, len(text), step):
        events += parser.feed(text[i:i + step])
    events += parser.finish()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (content or "")
    streamed: list[list[str]] = []
    for event in events:
        if isinstance(event, CallStart):  # a call opens with its id and name
            assert event.call == len(streamed)
            streamed.append([event.name, ""])
        elif isinstance(event, CallArguments):
            streamed[event.call][1] += event.arguments
    assert [tuple(c) for c in streamed] == calls
