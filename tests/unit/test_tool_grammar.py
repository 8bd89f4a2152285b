"""The grammars a turn with tools samples under, over real vocabularies: SmolLM2 (the tools
reach it through the system prompt, `<tool_call>` is spelled in text) and Qwen2.5-Coder
(`<tool_call>` is one special token). An `auto` turn is free until a call begins, then the call
must name an offered tool and fit its schema; with an output format, the answer is a call or
that JSON; integers stop at 16 digits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llguidance import LLMatcher
from llguidance.llamacpp import lltokenizer_from_vocab

from modelserve.chat.tools import call_grammar
from modelserve.chat.turn import OutputFormat, Tool
from modelserve.runtimes.llama_cpp import LlamaModel
from modelserve.sources import PackageSource
from tests.conftest import SMOLLM2

ADD = Tool("add", None, {"type": "object", "required": ["a", "b"], "properties": {
    "a": {"type": "integer"}, "b": {"type": "integer"}}}, "tools[0]")
TOTAL = OutputFormat("json_schema", {"type": "object", "required": ["total"],
                                     "properties": {"total": {"type": "integer"}}})
# Building llguidance's tokenizer calls a deprecated llama.cpp function once per token.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CALL = '{"name": "add", "arguments": {"a": 17, "b": 25}}'
BLOCK = f"<tool_call>\n{CALL}\n</tool_call>"


@pytest.fixture(scope="module", params=["smollm2", "qwen"])
def vocab(request: pytest.FixtureRequest) -> Iterator[tuple[LlamaModel, Any]]:
    path = PackageSource(**SMOLLM2).resolve() if request.param == "smollm2" \
        else Path(request.getfixturevalue("qwen_gguf"))
    model = LlamaModel(path, vocab_only=True)
    try:
        yield model, lltokenizer_from_vocab(model.vocab_handle)
    finally:
        model.close()


def accepts(vocab: tuple[LlamaModel, Any], mode: str | OutputFormat, text: str) -> bool:
    model, tokenizer = vocab
    grammar = call_grammar([ADD], False, model.has_token("<tool_call>"), mode)
    matcher = LLMatcher(tokenizer, grammar, log_level=0)
    return all(matcher.consume_token(t) for t in model.tokenize(text, False, True)) \
        and matcher.is_accepting()


@pytest.mark.parametrize(("text", "ok"), [
    ("The answer is 42.", True),
    ("", True),
    (CALL, True),  # a bare JSON call, as Llama and a free Qwen write them
    (CALL.replace('"add"', '"add_args"'), False),  # the pydantic title is no tool
    (f"Let me add them.\n{BLOCK}", True),
    ("Let me add them.\n" + BLOCK.replace("17", '"17"'), False),  # arguments fit the schema
    ('{"temperature": 18}', True),  # JSON that is no call stays free (Qwen writes some)
    ('{"name": "Paris"}', False),  # but `{"name"` begins a call
])
def test_auto_is_free_until_a_call_begins(vocab: tuple[LlamaModel, Any], text: str,
                                          ok: bool) -> None:
    assert accepts(vocab, "free", text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ('{"total":42}', True),
    (BLOCK, True),
    ("The answer is 42.", False),
    ('{"total":' + "1" * 17 + "}", False),  # 16 digits at most
])
def test_with_an_output_format_it_is_a_call_or_that_json(vocab: tuple[LlamaModel, Any],
                                                         text: str, ok: bool) -> None:
    assert accepts(vocab, TOTAL, text) is ok


def test_forced_is_a_call_only(vocab: tuple[LlamaModel, Any]) -> None:
    assert accepts(vocab, "forced", BLOCK)
    assert not accepts(vocab, "forced", "The answer is 42.")
    assert not accepts(vocab, "forced", CALL)
