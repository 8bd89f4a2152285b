"""Speculative decoding with a draft model, through HTTP with SmolLM2: the draft is SmolLM2 cut
to its first 8 of 30 layers (tests/fixtures/draft_gguf.py: same tokenizer, a fraction of the
cost, seldom right), or SmolLM2 itself (always right). Greedy outputs must be byte-identical to
the outputs without speculation, alone and among 16 streams (short conversations: see
test_speculation.py on llama.cpp's batch invariance); a draft model with another tokenizer is
refused at load."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelserve.sources import PackageSource
from tests.conftest import SMOLLM2, LiveServer, serve
from tests.fixtures.draft_gguf import truncate_layers
from tests.helpers import assert_openai_error, greedy_stream_text, metric

PLAIN, DRAFTED, SELF = "smol-plain", "smol-drafted", "smol-self-drafted"
TOPICS = ["cats", "dogs", "ships", "robots", "trees", "kings", "rivers", "stars", "birds",
          "cars", "moons", "fish", "horses", "cities", "mountains", "books"]
PROMPTS = [f"Write two sentences about {topic}." for topic in TOPICS]


@pytest.fixture(scope="module")
def draft_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = PackageSource(**SMOLLM2).resolve()
    return truncate_layers(source, tmp_path_factory.mktemp("draft") / "smol-8.gguf", 8)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, draft_gguf: Path,
         gemma_gguf: Path) -> Iterator[LiveServer]:
    small = {"context_size": 256, "parallel": 16, "batch_size": 512}
    with serve(tmp_path_factory.mktemp("draft-model"), {
        "server": {"lifecycle": {"model_roots": [str(gemma_gguf.parent)]}},
        "models": [
            {"name": PLAIN, "source": SMOLLM2, "options": {**small, "speculation": "off"}},
            # Both forced: on a CPU these guesses cost more than they can save, which `auto`
            # measures at load, and would not draft (tests/unit/test_draft_model.py).
            {"name": DRAFTED, "source": SMOLLM2,
             "options": {**small, "draft_model": str(draft_gguf), "speculation": "draft_model"}},
            {"name": SELF, "source": SMOLLM2,
             "options": {**small, "draft_model": SMOLLM2, "speculation": "draft_model"}},
        ]}) as server:
        yield server


@pytest.fixture()
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=300) as c:
        yield c


async def answer(client: openai.AsyncOpenAI, model: str, prompt: str) -> str:
    return await greedy_stream_text(client, model, prompt, max_tokens=64)


def test_greedy_outputs_are_the_same_with_a_draft_model_alone_and_among_16_streams(
        live: LiveServer, http: httpx.Client) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        async with openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused",
                                      max_retries=0, timeout=300) as client:
            plain = [await answer(client, PLAIN, p) for p in PROMPTS]
            alone = [await answer(client, DRAFTED, p) for p in PROMPTS]
            together = await asyncio.gather(*(answer(client, DRAFTED, p) for p in PROMPTS))
            self_drafted = [await answer(client, SELF, p) for p in PROMPTS[:4]]
        return plain, alone, list(together), self_drafted

    plain, alone, together, self_drafted = asyncio.run(scenario())
    assert all(plain)
    assert alone == plain
    assert together == plain
    assert self_drafted == plain[:4]
    # The cut-down model guesses poorly (4 % of SmolLM2's next tokens with 8 layers, 38 %
    # with 28: layers are not trained to stop early), so it drafts and then pauses; the model
    # drafting for itself is (nearly) always right.
    assert metric(http, "modelserve_draft_tokens_total", DRAFTED) > 0
    drafted = metric(http, "modelserve_draft_tokens_total", SELF)
    accepted = metric(http, "modelserve_draft_tokens_accepted_total", SELF)
    assert drafted > 0 and accepted > 0.9 * drafted, (accepted, drafted)
    assert metric(http, "modelserve_draft_tokens_total", PLAIN) == 0


def test_a_draft_model_with_another_tokenizer_is_refused(http: httpx.Client,
                                                         gemma_gguf: Path) -> None:
    resp = http.post("/admin/models/load", params={"wait": "true"}, json={
        "name": "smol-gemma-drafted", "source": SMOLLM2,
        "options": {"context_size": 256, "parallel": 1, "draft_model": str(gemma_gguf)}})
    assert_openai_error(resp, 422, code="model_load_failed")
    assert "does not share the tokenizer" in resp.json()["error"]["message"]
    assert http.get("/ready").status_code == 200
