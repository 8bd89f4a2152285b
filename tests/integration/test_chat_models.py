"""Chat models other than SmolLM2: a GGUF without a template gets its architecture's built-in
(Gemma 3, issue 15), a config may name a built-in, and Qwen2.5-Coder answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve

USER = [{"role": "user", "content": "What is the capital of France?"}]
SMALL = {"context_size": 1024, "parallel": 1, "batch_size": 256}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path, qwen_gguf: Path
         ) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("chat-models"), {"models": [
        {"name": "gemma", "source": str(gemma_gguf), "options": SMALL},
        # SmolLM2 carries a ChatML template: the config's built-in name wins over it.
        {"name": "smollm2-as-gemma", "source": SMOLLM2,
         "options": {**SMALL, "context_size": 512, "chat_template": "gemma"}},
        {"name": "qwen", "source": str(qwen_gguf), "options": SMALL},
    ]}) as server:
        yield server


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=300) as client:
        yield client


def rendered(http: httpx.Client, model: str, messages: list[dict[str, Any]]) -> list[int]:
    resp = http.post("/tokenize", json={"model": model, "messages": messages})
    assert resp.status_code == 200, resp.text
    tokens: list[int] = resp.json()["tokens"]
    return tokens


def text_of(http: httpx.Client, model: str, tokens: list[int]) -> str:
    resp = http.post("/detokenize", json={"model": model, "tokens": tokens})
    assert resp.status_code == 200, resp.text
    text: str = resp.json()["prompt"]
    return text


def test_gemma_without_a_template_is_prompted_in_gemma_format(http: httpx.Client) -> None:
    messages = [{"role": "system", "content": "Answer in one word."}, *USER]
    tokens = rendered(http, "gemma", messages)
    # Gemma 3's <bos>, <start_of_turn> and <end_of_turn> (control tokens: /detokenize leaves
    # them out); in ChatML, <|im_start|> would be spelt out in plain text pieces.
    assert tokens[0] == 2 and tokens.count(105) == 2 and tokens.count(106) == 1
    text = text_of(http, "gemma", tokens)
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert text.endswith("user\nAnswer in one word.\n\nWhat is the capital of France?\nmodel\n")

    answer = http.post("/v1/chat/completions", json={
        "model": "gemma", "messages": USER, "max_tokens": 24, "temperature": 0}).json()
    content = answer["choices"][0]["message"]["content"]
    # The bug this fixes: ChatML prompts made Gemma go on with "<|im_end|>\n<|im_start|>...".
    # (This GGUF is the base model, not -it: what it answers is not checked, only the format.)
    assert content and "<|im_" not in content, content


def test_config_names_a_builtin_template(http: httpx.Client) -> None:
    # SmolLM2's vocabulary has no Gemma control tokens, so the markers stay visible as text.
    text = text_of(http, "smollm2-as-gemma", rendered(http, "smollm2-as-gemma", USER))
    assert text.endswith("<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
                         "<start_of_turn>model\n"), text


def test_qwen_answers_a_chat(http: httpx.Client) -> None:
    text = text_of(http, "qwen", rendered(http, "qwen", USER))
    assert "What is the capital of France?" in text  # its own (ChatML, tools-aware) template
    resp = http.post("/v1/chat/completions", json={
        "model": "qwen", "messages": USER, "max_tokens": 16, "temperature": 0})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "Paris" in body["choices"][0]["message"]["content"], body
    assert 0 < body["usage"]["completion_tokens"] <= 16
