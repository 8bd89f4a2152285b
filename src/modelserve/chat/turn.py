"""A chat request as the core takes it, whatever API it came through.

Each API surface builds a `Turn` from its own wire types. `where` fields keep the names the
client used (`messages[2].content[1].image_url`, `tool_choice`), so a 400 raised deep in the
core still names the field in the client's terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Text:
    text: str
    where: str


@dataclass(frozen=True)
class Image:
    url: str  # a data: URL, or an http(s) one when the server allows remote images
    where: str


Part = Text | Image


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[Part]
    where: str  # the message's own name, e.g. "messages[2]"
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # a tool result: the call it answers
    name: str | None = None
    # Other fields of the wire message that templates may read (passed on as they came).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    where: str  # where the client sent its parameters, e.g. "tools[0].function.parameters"
    # Other fields of the definition (OpenAI's `strict`): templates render them as given.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolChoice:
    mode: Literal["none", "auto", "required", "named"]
    name: str | None = None  # mode "named": the one tool the answer must call


@dataclass(frozen=True)
class OutputFormat:
    kind: Literal["json_object", "json_schema", "grammar"]
    schema: dict[str, Any] | None = None  # json_schema
    grammar: str | None = None  # GBNF
    where: str = "response_format"


@dataclass
class Sampling:
    max_tokens: int | None = None  # asked for; None: up to the context
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None  # top alternatives per token; None: no logprobs
    n: int = 1
    ignore_eos: bool = False  # the answer runs to max_tokens (or a stop string)
    min_tokens: int = 0  # no end of generation before this many tokens
    # Predicted Outputs: text the answer is expected to repeat (tokenized with the prompt).
    prediction: str | None = None
    cache_salt: str | None = None  # the client's scope for prompt KV reuse (chat/cache_scope)


@dataclass
class Names:
    """The client's names for the turn's top-level fields, for errors."""

    messages: str = "messages"
    tools: str = "tools"
    tool_choice: str = "tool_choice"
    tool_choice_name: str = "tool_choice.function.name"
    max_tokens: str = "max_tokens"
    budget: str = "messages"  # what a prompt + answer too long for the context blames
    logit_bias: str = "logit_bias"
    n: str = "n"
    prediction: str = "prediction.content"


@dataclass
class Turn:
    model: str
    messages: list[Message]
    sampling: Sampling = field(default_factory=Sampling)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    output: OutputFormat | None = None
    variables: dict[str, Any] = field(default_factory=dict)  # extra template variables
    names: Names = field(default_factory=Names)
    # A prompt the client templated itself (Ollama's `raw`): used as it is, no template.
    raw_prompt: str | None = None

    def images(self) -> list[Image]:
        return [p for m in self.messages if isinstance(m.content, list)
                for p in m.content if isinstance(p, Image)]

    def deterministic(self) -> bool:
        """The same turn always gives the same answer (so it may be cached): greedy or seeded,
        and no image a remote host may serve differently next time."""
        return (self.sampling.temperature == 0 or self.sampling.seed is not None) and \
            not any(not image.url.startswith("data:") for image in self.images())
