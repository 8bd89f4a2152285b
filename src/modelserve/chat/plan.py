"""A turn planned: checked against the server's limits, its tools and output grammar, its
prompt rendered with the model's template, its budget, then its images encoded.

The pipeline runs these in its order (api/pipeline.py): `check` before the model is held,
`count` (cheap: template and tokens) before admission and the cache lookup, `prepare` (costly:
images) only for a request that will run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelserve.api.errors import APIError, bad_request
from modelserve.chat.budget import check_token_ids, completion_budget, sampling_params
from modelserve.chat.grammars import output_grammar
from modelserve.chat.prompt import ChatPrompt, Count, load_images, plan_chat_prompt
from modelserve.chat.reasoning import OutputParser, opens_thinking
from modelserve.chat.tool_parser import OPEN
from modelserve.chat.tools import ToolPlan, plan_tools
from modelserve.chat.turn import Text, Turn
from modelserve.config import ImageSettings
from modelserve.config_sections import InputLimits
from modelserve.engine.sequence import MultimodalPrompt, SamplingParams
from modelserve.kinds.chat import ChatModel


def _over(message: str, param: str, limit: str) -> APIError:
    return APIError(400, f"{message} (server limit `{limit}`).", param=param,
                    code="limit_exceeded")


def check_limits(turn: Turn, limits: InputLimits) -> None:
    """The server's caps (`limits:`): each refusal is a 400 naming the cap."""
    names, sampling = turn.names, turn.sampling
    if sampling.n > limits.max_n:
        raise _over(f"n is {sampling.n}, over the maximum of {limits.max_n}", names.n, "max_n")
    if sampling.max_tokens is not None and limits.max_tokens is not None \
            and sampling.max_tokens > limits.max_tokens:
        raise _over(f"max_tokens is {sampling.max_tokens}, over the maximum of "
                    f"{limits.max_tokens}", names.max_tokens, "max_tokens")
    if len(turn.messages) > limits.max_messages:
        raise _over(f"{len(turn.messages)} messages, over the maximum of "
                    f"{limits.max_messages}", names.messages, "max_messages")
    for i, msg in enumerate(turn.messages):
        chars = len(msg.content) if isinstance(msg.content, str) else \
            sum(len(p.text) for p in msg.content if isinstance(p, Text))
        if chars > limits.max_message_chars:
            raise _over(f"message {i} has {chars} characters, over the maximum of "
                        f"{limits.max_message_chars}", f"{msg.where}.content",
                        "max_message_chars")
    predicted = len(sampling.prediction or "")
    if predicted > limits.max_message_chars:  # it is tokenized like a message
        raise _over(f"the prediction has {predicted} characters, over the maximum of "
                    f"{limits.max_message_chars}", names.prediction, "max_message_chars")


@dataclass
class TurnPlan:
    turn: Turn
    grammar: str | None  # the output's, or a forced call's once counted
    tools: ToolPlan | None
    prompt: ChatPrompt | None = None
    thinking: bool = False  # the prompt opened a think block
    max_tokens: int = 0
    multimodal: MultimodalPrompt | None = None
    prediction: tuple[int, ...] = ()  # the predicted output's tokens, once counted

    @property
    def tokens(self) -> list[int]:
        """The prompt's tokens (with its images' spans once prepared)."""
        if self.multimodal is not None:
            return self.multimodal.tokens
        assert self.prompt is not None
        return self.prompt.text_tokens

    def parser(self) -> OutputParser:
        return OutputParser(self.tools.names if self.tools is not None else None,
                            self.thinking)

    def jobs(self) -> list[tuple[list[int], SamplingParams]]:
        return [(self.tokens, sampling_params(self.turn.sampling, self.max_tokens, i,
                                              self.grammar, self.prediction))
                for i in range(self.turn.sampling.n)]


def check(turn: Turn, limits: InputLimits) -> TurnPlan:
    """Everything that needs no model: limits, the output grammar, the tools."""
    check_limits(turn, limits)
    grammar = output_grammar(turn.output)
    tools = plan_tools(turn)
    if tools is not None and tools.forced and _own_grammar(turn):
        raise bad_request("A forced tool call (tool_choice required or named) cannot also "
                          "follow a grammar.", param=turn.names.tool_choice)
    return TurnPlan(turn, grammar, tools)


def count(plan: TurnPlan, model: ChatModel, images: ImageSettings) -> tuple[int, int]:
    """Render the prompt (text tokens; a marker stands where each image goes) and budget
    the answer: (prompt tokens, most new tokens) for admission. An image's tokens are known
    only once encoded, which a refused request must not cost: they are charged when the
    request settles (api/admission.py)."""
    turn = plan.turn
    check_token_ids(model, [t for t, _ in turn.sampling.logit_bias], turn.names.logit_bias)
    if turn.raw_prompt is not None:
        plan.prompt = ChatPrompt([], model.tokenize(turn.raw_prompt, special=True))
    else:
        plan.prompt = plan_chat_prompt(model, turn.messages, images, plan.tools,
                                       turn.variables)
    # A template that opens the think block itself: the output starts inside it.
    tail = plan.prompt.text_tokens[-8:]
    plan.thinking = opens_thinking(
        b"".join(model.token_bytes(t) for t in tail).decode("utf-8", errors="replace"))
    if plan.tools is not None:
        plan.grammar = _call_grammar(plan, model) or plan.grammar
    if turn.sampling.prediction:
        # The answer's own tokens, as the model would write them: no BOS, and special-token
        # syntax in the text stays text.
        plan.prediction = tuple(model.tokenize(turn.sampling.prediction, add_special=False))
    plan.max_tokens = budget(plan, model, len(plan.prompt.text_tokens))
    return len(plan.prompt.text_tokens), plan.max_tokens * turn.sampling.n


def _own_grammar(turn: Turn) -> bool:
    return turn.output is not None and turn.output.kind == "grammar"


def _call_grammar(plan: TurnPlan, model: ChatModel) -> str | None:
    """The grammar of a turn's calls, or None where the output's own (if any) stays.

    A forced call's turn holds no text for an output format to shape (it applies to the
    answer after the results; with a client's grammar check() refused it). An auto one's calls
    are constrained once begun when the model writes them as `<tool_call>` blocks (or a bare
    JSON call): its vocabulary has the tag (Qwen, Hermes), or its template knows no tools and
    the system prompt teaches it the format. Not for other native formats (Llama's
    `<|python_tag|>`, Mistral's `[TOOL_CALLS]`), nor an answer that opens in a think block:
    the grammar would forbid their special tokens; nor beside a client's own grammar, which
    shapes the whole answer, calls too."""
    assert plan.tools is not None
    special = model.has_token(OPEN)
    if plan.tools.forced:
        return plan.tools.grammar(special, plan.turn.output)
    hermes = special or not model.template.supports_tools
    if not hermes or plan.thinking or _own_grammar(plan.turn):
        return None
    return plan.tools.grammar(special, plan.turn.output)


def budget(plan: TurnPlan, model: ChatModel, prompt_len: int) -> int:
    return completion_budget(model, prompt_len, plan.turn.sampling.max_tokens,
                             plan.turn.names.budget)


async def prepare(plan: TurnPlan, model: ChatModel, images: ImageSettings, counter: Count
                  ) -> int | None:
    """Fetch, decode and encode the images; returns the prompt's length when images changed
    it (their spans count as prompt tokens)."""
    assert plan.prompt is not None
    plan.multimodal = await load_images(model, plan.prompt, images, counter)
    if not plan.multimodal.images:
        return None
    plan.max_tokens = budget(plan, model, len(plan.multimodal.tokens))
    return len(plan.multimodal.tokens)


ParserFactory = Callable[[], OutputParser]
