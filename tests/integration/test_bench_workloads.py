"""`modelserve bench chat --workload multiturn` against a real server, at the smallest size:
two users, two turns each, two workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.cli import main
from tests.conftest import SMOLLM2, LiveServer, serve


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("workloads"), {"models": [
        {"name": "smol", "source": SMOLLM2, "options": {"context_size": 1024, "parallel": 2}},
    ]}) as server:
        yield server


def test_multiturn_conversations_against_a_live_server(
        live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.jsonl"
    main(["bench", "chat", "--url", live.url, "--model", "smol", "--workload", "multiturn",
          "--users", "2", "--turns", "2", "--concurrency", "2", "--max-tokens", "8",
          "--system-words", "60", "--label", "t", "--json-out", str(out)])
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["workload"] == "multiturn" and row["requests"] == 4, row
    assert row["errors"] == 0 and row["completion_tokens"] > 0, row
    assert len(row["ttft_p50_by_turn_ms"]) == 2
    # modelserve reports cached prompt tokens: a sum, never more than the prompts'.
    assert 0 <= row["cached_tokens"] <= row["prompt_tokens"]
    assert "| t | multiturn | 2 |" in capsys.readouterr().out
