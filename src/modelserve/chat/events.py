"""What a turn produces, per choice: a stream of neutral events, or one whole result. Each
API surface encodes these in its own shape; a result replays as the same events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from modelserve.chat.turn import ToolCall
from modelserve.engine.sequence import TokenLogprob


@dataclass
class TextDelta:
    index: int  # the choice
    text: str
    logprobs: list[TokenLogprob] | None = None  # the tokens of this text, when asked for


@dataclass
class ReasoningDelta:
    index: int
    text: str


@dataclass
class CallStart:
    index: int
    call: int  # the call's position in the choice
    id: str
    name: str


@dataclass
class CallArguments:
    index: int
    call: int
    arguments: str  # a fragment of the call's JSON arguments


@dataclass
class Logprobs:
    """Logprobs of tokens whose text went out changed (held back, parsed into a call)."""

    index: int
    logprobs: list[TokenLogprob]


@dataclass
class Finish:
    index: int
    reason: str  # stop | length | tool_calls
    stop_sequence: str | None = None  # the stop string that ended it, if one did


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    # Predicted Outputs: drafted tokens the answers took, and those they did not.
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


Event = TextDelta | ReasoningDelta | CallStart | CallArguments | Logprobs | Finish


@dataclass
class Choice:
    index: int
    content: str | None  # None: only calls (or only reasoning)
    reasoning: str | None
    tool_calls: list[ToolCall]
    finish_reason: str
    stop_sequence: str | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Result:
    """A whole answer: what a non-streamed response encodes, and what the cache keeps."""

    id: str  # hex; each surface prefixes its own (chatcmpl-, msg_, resp_)
    created: int
    model: str
    choices: list[Choice]
    usage: Usage

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        choices = [Choice(**{**c, "tool_calls": [ToolCall(**t) for t in c["tool_calls"]],
                             "logprobs": None if c["logprobs"] is None else
                             [TokenLogprob(lp["token"], lp["logprob"],
                                           tuple(tuple(t) for t in lp["top"]))
                              for lp in c["logprobs"]]})
                   for c in data["choices"]]
        return cls(data["id"], data["created"], data["model"], choices,
                   Usage(**data["usage"]))

    def events(self) -> Iterator[Event]:
        """The result as a live stream would have sent it: per choice its reasoning, its
        text (with its logprobs), its calls (opened, then their arguments), its finish."""
        for choice in self.choices:
            i = choice.index
            if choice.reasoning:
                yield ReasoningDelta(i, choice.reasoning)
            if choice.content or choice.logprobs is not None:
                yield TextDelta(i, choice.content or "", choice.logprobs)
            for n, call in enumerate(choice.tool_calls):
                yield CallStart(i, n, call.id, call.name)
                yield CallArguments(i, n, call.arguments)
            yield Finish(i, choice.finish_reason, choice.stop_sequence)


@dataclass
class Answer:
    """One choice parsed whole (reasoning.OutputParser.answer)."""

    content: str | None
    reasoning: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
