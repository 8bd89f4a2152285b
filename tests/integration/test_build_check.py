"""`modelserve check-build` and the load-time warm-up decode, on the real llama.cpp and GGUF."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelserve.cli import main
from modelserve.sources import PackageSource
from tests.conftest import SMOLLM2, LiveServer

MODELSERVE = [sys.executable, "-m", "modelserve.cli"]


def test_check_build_passes_here_and_decodes_the_configs_first_model(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["check-build", "--json"])
    assert done.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["amx"] == [] and report["cpu_lacks"] == []
    assert report["decode"] == "decoded one token of SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "AVX2" in report["compiled"] or "NEON" in report["compiled"]


def test_check_build_fails_with_a_reason_on_a_broken_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(PackageSource(**SMOLLM2).resolve().read_bytes()[:4096])  # cut short
    done = subprocess.run([*MODELSERVE, "check-build", "--model", str(broken)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "decode: decoding one token of broken.gguf failed" in done.stdout
    assert done.stdout.rstrip().endswith("FAILED")


def test_a_chat_model_is_warmed_up_before_it_is_ready(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(json.dumps({"models": [{"name": "warm", "source": SMOLLM2,
                                              "options": {"parallel": 1}}]}))
    with caplog.at_level(logging.INFO, logger="modelserve"), LiveServer(config) as live:
        assert httpx.get(f"{live.url}/ready", timeout=30).status_code == 200
        answer = live.openai().chat.completions.create(
            model="warm", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
            temperature=0)
    messages = [r.getMessage() for r in caplog.records]
    warm = messages.index("warm-up decode of warm")
    assert any(m.startswith("loaded warm from") for m in messages[warm:])
    # The warm-up token was forgotten: the first request reuses nothing from it.
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 0
