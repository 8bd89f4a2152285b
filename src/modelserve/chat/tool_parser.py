"""Tool calls parsed out of generated text, whole or while streaming: Hermes/Qwen
`<tool_call>` blocks, the ```json blocks Qwen2.5-Coder writes when left free, Llama 3.x JSON
(`{"name": ..., "parameters": ...}` as the whole answer, maybe after `<|python_tag|>`) and
Mistral's `[TOOL_CALLS] [{"name": ..., "arguments": ...}, ...]`.

One parser serves both: a whole answer is parsed by feeding it all at once, so a streamed
call's deltas reassemble to exactly the non-streamed call.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from modelserve.chat.events import CallArguments, CallStart, ReasoningDelta, TextDelta
from modelserve.chat.turn import ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"([^"\\]*)"\s*,\s*"arguments"\s*:\s*')
_HEAD_START = '{"name":"'
_CLOSING = {"{": "}", "[": "]"}
# Where a call starts, and what ends it. Hermes/Qwen `<tool_call>` blocks; Qwen2.5-Coder,
# left free, often writes its call as a ```json block instead (llama.cpp reads both too).
BLOCKS = {OPEN: CLOSE, "```json": "```"}
# Mistral's list of calls, and Llama 3.x's bare JSON call: both a JSON value read whole (its
# calls go out once the value is complete), with no closer of their own.
MISTRAL, PYTHON_TAG, LLAMA = "[TOOL_CALLS]", "<|python_tag|>", "{"
OPENERS = (*BLOCKS, MISTRAL)


# What a piece of output adds, as the core's events for choice 0 (run.py sets the choice).
Event = TextDelta | ReasoningDelta | CallStart | CallArguments


@dataclass
class _Call:
    id: str
    name: str
    arguments: str = ""


@dataclass
class ToolCallParser:
    """Splits generated text into content and tool-call blocks, incrementally: text that
    could still become a block is held back, a call is announced (id, name, arguments "")
    once its name is read, and its arguments go out as they arrive.

    `names`: the tools offered. A ```json block, a Mistral list or a Llama JSON answer is a
    call only if it names one of them (models write JSON for other reasons too); a
    `<tool_call>` always is. A Llama answer that starts with `{` is held back until its value
    is complete (and, being a call, until the end: only a whole answer is one)."""

    names: frozenset[str] = frozenset()
    calls: list[_Call] = field(default_factory=list)
    content: str = ""  # all content sent
    _buf: str = ""
    _state: str = "text"  # text | head | args | after | json | tail
    _open: str = OPEN  # the block being read
    _given: str = ""  # json: the text before the value, content again if it is no call
    _fresh: bool = True  # nothing read yet: a Llama JSON call is the whole answer or none
    _held_space: str = ""  # content whitespace, sent only if more content follows
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False
    _pos: int = 0  # json: how much of the value is scanned
    _value: str = ""  # tail: a Llama call, made only if nothing follows it

    def feed(self, text: str) -> list[Event]:
        events: list[Event] = []
        self._buf += text
        while getattr(self, f"_{self._state}")(events):
            pass
        return events

    def finish(self) -> list[Event]:
        """The end of the output: what was held back, if it was not a call after all."""
        events: list[Event] = []
        if self._state == "text":
            self._content(self._buf, events)
        elif self._state == "head" and not self._whole_block(self._buf, events):
            self._content(self._open + self._buf, events)
        elif self._state == "json":  # cut short: not a complete call
            self._content(self._given + self._buf, events)
        elif self._state == "tail":  # the Llama call was the whole answer
            self._calls_of(self._json_calls(self._value) or [], events)
        self._buf = ""
        return events

    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall(c.id, c.name, c.arguments) for c in self.calls]

    def result(self) -> tuple[str | None, list[ToolCall]]:
        """The content sent so far (None if there are calls and no text) and the calls."""
        return (self.content or None) if self.calls else self.content, self.tool_calls()

    def _text(self, events: list[Event]) -> bool:
        if self._fresh:
            start = self._llama_start()
            if start is None:
                return False  # only whitespace or a piece of `<|python_tag|>` so far
            self._fresh = False
            if start >= 0:
                self._open, self._given = LLAMA, self._buf[:start]
                self._to_json(start)
                return True
        found = [(at, opener) for opener in OPENERS if (at := self._buf.find(opener)) >= 0]
        if found:
            at, self._open = min(found)
            self._content(self._buf[:at], events)
            if self._open == MISTRAL:
                self._given = MISTRAL
                self._to_json(at + len(MISTRAL))
                return True
            self._buf, self._state = self._buf[at + len(self._open):], "head"
            return True
        keep = max((k for opener in OPENERS for k in range(min(len(opener) - 1, len(self._buf)),
                                                          0, -1)
                    if self._buf.endswith(opener[:k])), default=0)
        self._content(self._buf[:len(self._buf) - keep], events)
        self._buf = self._buf[len(self._buf) - keep:]
        return False

    def _llama_start(self) -> int | None:
        """Where a Llama 3.x JSON call starts (its `{`), -1 if the answer is no such call, None
        while that cannot be told yet."""
        text = self._buf.lstrip()
        if text.startswith(PYTHON_TAG):
            text = text[len(PYTHON_TAG):].lstrip()
        elif PYTHON_TAG.startswith(text):
            return None
        if not text:
            return None
        return len(self._buf) - len(text) if text.startswith(LLAMA) else -1

    def _to_json(self, start: int) -> None:
        self._buf, self._state, self._pos = self._buf[start:], "json", 0
        self._depth, self._in_string, self._escaped = 0, False, False

    def _json(self, events: list[Event]) -> bool:
        # Scanned as it arrives (`_pos`), so a long answer that starts with `{` costs one pass.
        while self._pos < len(self._buf):
            self._pos += 1
            if self._scan(self._buf[self._pos - 1]):
                value, self._buf = self._buf[:self._pos], self._buf[self._pos:]
                calls = self._json_calls(value)
                if calls is not None and self._open == LLAMA:
                    self._value, self._state = value, "tail"
                    return True
                if calls is None:
                    self._content(self._given + value, events)
                self._calls_of(calls or [], events)
                self._state = "text"
                return True
        return False

    def _tail(self, events: list[Event]) -> bool:
        # A Llama call is the whole answer: JSON that names a tool and goes on with more text
        # is the model quoting a call or a result (Qwen does, after a tool result).
        if not self._buf.strip():
            return False
        self._content(self._given + self._value + self._buf, events)
        self._buf, self._state = "", "text"
        return False

    def _calls_of(self, calls: list[tuple[str, Any]], events: list[Event]) -> None:
        for name, arguments in calls:
            self._start(name, events)
            self._arguments(_compact(arguments), events)

    def _json_calls(self, value: str) -> list[tuple[str, Any]] | None:
        """The calls a complete Llama or Mistral JSON value makes; None: it is no call (not
        JSON, or a tool that was not offered)."""
        try:
            data = json.loads(value)
        except ValueError:
            return None
        key = "parameters" if self._open == LLAMA else "arguments"
        items = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
        calls = [(item["name"], item.get(key, item.get("arguments")))
                 for item in items if isinstance(item, dict) and item.get("name") in self.names]
        if not calls or len(calls) != len(items) or any(args is None for _, args in calls) \
                or (self._open == LLAMA and not isinstance(data, dict)):
            return None
        return calls

    def _head(self, events: list[Event]) -> bool:
        fenced = self._open != OPEN
        match = _HEAD.match(self._buf)
        if match and (not fenced or match.group(1) in self.names):
            self._start(match.group(1), events)
            self._buf, self._state = self._buf[match.end():], "args"
            self._depth, self._in_string, self._escaped = 0, False, False
            return True
        compact = "".join(self._buf[:40].split())
        if fenced and (match or not (compact.startswith(_HEAD_START)
                                     or _HEAD_START.startswith(compact))):
            return self._not_a_call(events)
        end = self._buf.find(BLOCKS[self._open])
        if end < 0:
            return False  # wait for more: the name may not be complete yet
        # Not the usual key order: parse the block whole, or give it back as text.
        after = end + len(BLOCKS[self._open])
        if self._whole_block(self._buf[:end], events):
            self._buf, self._state = self._buf[after:], "text"
            return True
        # A `<tool_call>` block goes out whole, or its opener would be found again.
        return self._not_a_call(events, 0 if fenced else after)

    def _not_a_call(self, events: list[Event], skip: int = 0) -> bool:
        """The opener is content after all, and so are the `skip` characters after it; the
        rest is read again as text."""
        self._content(self._open + self._buf[:skip], events)
        self._buf, self._state = self._buf[skip:], "text"
        return True

    def _args(self, events: list[Event]) -> bool:
        # Whitespace outside strings is dropped: arguments come out compact, as OpenAI's do,
        # however the model laid them out (Qwen's ```json blocks are indented).
        taken, done, kept = 0, False, []
        while taken < len(self._buf) and not done:
            char = self._buf[taken]
            taken += 1
            if char.isspace() and not self._in_string:
                continue
            kept.append(char)
            done = self._scan(char)
        piece = "".join(kept)
        self._buf = self._buf[taken:]
        if piece:
            self._arguments(piece, events)
        if done:
            self._state = "after"
        return done

    def _scan(self, char: str) -> bool:
        """One character of the arguments' JSON value; True once the value is complete."""
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = False
                return self._depth == 0
            return False
        if char == '"':
            self._in_string = True
        elif char in _CLOSING:
            self._depth += 1
        elif char in "}]":
            self._depth -= 1
            return self._depth == 0
        return False

    def _after(self, events: list[Event]) -> bool:
        # The rest of the block (the object's `}`) is syntax, not content.
        end = self._buf.find(BLOCKS[self._open])
        if end < 0:
            return False
        self._buf, self._state = self._buf[end + len(BLOCKS[self._open]):], "text"
        return True

    def _whole_block(self, block: str, events: list[Event]) -> bool:
        try:
            call = json.loads(block)
        except ValueError:
            return False
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                and "arguments" in call):
            return False
        if self._open != OPEN and call["name"] not in self.names:
            return False
        self._start(call["name"], events)
        self._arguments(_compact(call["arguments"]), events)
        return True

    def _start(self, name: str, events: list[Event]) -> None:
        call = _Call(f"call_{uuid.uuid4().hex[:24]}", name)
        self.calls.append(call)
        events.append(CallStart(0, len(self.calls) - 1, call.id, name))

    def _arguments(self, piece: str, events: list[Event]) -> None:
        self.calls[-1].arguments += piece
        events.append(CallArguments(0, len(self.calls) - 1, piece))

    def _content(self, text: str, events: list[Event]) -> None:
        # Whitespace around and between calls is layout, not content: sent only when text
        # follows it, so a bare call has content null, streamed or not.
        text = self._held_space + text
        body = text.rstrip()
        self._held_space = text[len(body):]
        if not self.content:
            body = body.lstrip()
        if body:
            self.content += body
            events.append(TextDelta(0, body))


def _compact(arguments: Any) -> str:
    """Arguments as OpenAI sends them: a JSON string, compact (given text is kept as is)."""
    return arguments if isinstance(arguments, str) \
        else json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
