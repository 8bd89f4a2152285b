"""A chat answer split into reasoning, content and tool calls, whole or while streaming.

Reasoning models write their thoughts in a `<think>…</think>` block before the answer (Qwen3,
DeepSeek-R1, SmolLM3); some templates open the block in the prompt, so the output starts
inside it and only `</think>` appears. The thoughts go to `reasoning_content`, the rest to the
tool-call parser (or straight to content without tools). One parser serves both paths: a whole
answer is fed at once, so streamed deltas reassemble to exactly the non-streamed message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelserve.chat.events import Answer, ReasoningDelta, TextDelta
from modelserve.chat.tool_parser import Event, ToolCallParser

THINK, UNTHINK = "<think>", "</think>"


def opens_thinking(prompt_tail: str) -> bool:
    """Whether the rendered prompt ends inside a think block (the template opened it)."""
    return prompt_tail.rstrip().endswith(THINK)


@dataclass
class OutputParser:
    """`tools`: the names of the offered tools (None: no tools, text is content);
    `thinking`: the prompt opened a think block. Without either marker in the output the text
    goes on unchanged, so a model that never thinks is unaffected."""

    tools: frozenset[str] | None = None
    thinking: bool = False
    reasoning: str = ""  # all reasoning sent
    content: str = ""  # all content sent, without tools
    _calls: ToolCallParser | None = None
    _state: str = "start"  # start | think | after | rest
    _buf: str = ""
    _held_space: str = ""  # reasoning whitespace, sent only if more reasoning follows
    _events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tools is not None:
            self._calls = ToolCallParser(self.tools)
        if self.thinking:
            self._state = "think"

    def feed(self, text: str) -> list[Event]:
        self._buf += text
        while getattr(self, f"_{self._state}")():
            pass
        return self._take()

    def finish(self) -> list[Event]:
        """The end of the output: what was held back goes where it belongs now."""
        if self._state == "think":  # cut short while thinking: all of it was reasoning
            self._reason(self._buf)
        elif self._state in ("start", "rest"):
            self._pass(self._buf)
        self._buf = ""
        if self._calls is not None:
            self._events += self._calls.finish()
        return self._take()

    def answer(self) -> Answer:
        if self._calls is not None:
            content, calls = self._calls.result()
        else:
            content, calls = self.content, []
        return Answer(content=None if not content and (calls or self.reasoning) else content,
                      reasoning=self.reasoning or None, tool_calls=calls)

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _start(self) -> bool:
        # Only a think block at the very start counts (leading whitespace aside): a `<think>`
        # later in an answer is text the model quotes, or part of a call's arguments.
        text = self._buf.lstrip()
        if text.startswith(THINK):
            self._buf, self._state = text[len(THINK):], "think"
            return True
        if THINK.startswith(text):
            return False  # it may still open one
        self._state = "rest"
        return True

    def _think(self) -> bool:
        at = self._buf.find(UNTHINK)
        if at >= 0:
            self._reason(self._buf[:at])
            self._buf, self._state = self._buf[at + len(UNTHINK):], "after"
            return True
        keep = max((k for k in range(min(len(UNTHINK) - 1, len(self._buf)), 0, -1)
                    if self._buf.endswith(UNTHINK[:k])), default=0)
        self._reason(self._buf[:len(self._buf) - keep])
        self._buf = self._buf[len(self._buf) - keep:]
        return False

    def _after(self) -> bool:
        # The blank lines after `</think>` are layout, not the answer's first text.
        self._buf = self._buf.lstrip()
        if not self._buf:
            return False
        self._state = "rest"
        return True

    def _rest(self) -> bool:
        self._pass(self._buf)
        self._buf = ""
        return False

    def _pass(self, text: str) -> None:
        if self._calls is not None:
            self._events += self._calls.feed(text)
        elif text:
            self.content += text
            self._events.append(TextDelta(0, text))

    def _reason(self, text: str) -> None:
        # Whitespace at either end of the thoughts is layout, as around tool calls.
        text = self._held_space + text
        body = text.rstrip()
        self._held_space = text[len(body):]
        if not self.reasoning:
            body = body.lstrip()
        if body:
            self.reasoning += body
            self._events.append(ReasoningDelta(0, body))


def parse_answer(text: str, tools: frozenset[str] | None, thinking: bool = False) -> Answer:
    """A whole answer as the stream of the same text reassembles to."""
    parser = OutputParser(tools, thinking)
    parser.feed(text)
    parser.finish()
    return parser.answer()
