"""`modelserve bench mixed` against a real server serving SmolLM2 and MiniLM together: a couple
of seconds of chat streams and embeddings clients at once, each side's figures and no errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.cli import main
from tests.conftest import MINILM, SMOLLM2, LiveServer, serve


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One thread each: the test machines' cores are shared, and a llama.cpp pool that spins on
    # every core crawls when anything else runs (the very load this benchmark makes).
    with serve(tmp_path_factory.mktemp("mixed"), {"models": [
        {"name": "smol", "source": SMOLLM2,
         "options": {"context_size": 512, "parallel": 2, "threads": 1}},
        {"name": "minilm", "kind": "embeddings", "source": MINILM, "options": {"threads": 1}},
    ]}) as server:
        yield server


def bench(*args: str) -> list[str]:
    return ["bench", "mixed", "--chat-model", "smol", "--embeddings-model", "minilm",
            "--chat-streams", "2", "--embedding-clients", "4", "--max-tokens", "16",
            "--warmup", "0.5", *args]


def assert_both_sides(row: dict[str, object]) -> None:
    assert row["chat_errors"] == 0 and row["embedding_errors"] == 0, row
    assert isinstance(row["chat_tokens_per_s"], float) and row["chat_tokens_per_s"] > 0, row
    assert isinstance(row["embeddings_per_s"], float) and row["embeddings_per_s"] > 0, row
    assert row["itl_p50_ms"] is not None and row["embedding_p99_ms"] is not None, row
    assert row["error_samples"] == []


def test_mixed_load_on_one_server(live: LiveServer, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mixed.jsonl"
    main(bench("--url", live.url, "--seconds", "2", "--label", "t", "--json-out", str(out)))
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["phase"] == "mixed" and row["client"] == "httpx"
    assert (row["chat_streams"], row["embedding_clients"]) == (2, 4)
    assert_both_sides(row)
    assert "| t | mixed | 2 | 4 |" in capsys.readouterr().out


def test_alone_and_mixed_on_two_urls_with_aiohttp(live: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "mixed.jsonl"
    # The same server under both URLs: the two-server path (chat here, embeddings there).
    main(bench("--chat-url", live.url, "--embeddings-url", live.url, "--seconds", "1",
               "--alone", "--client", "aiohttp", "--json-out", str(out)))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["chat-alone", "embeddings-alone", "mixed"]
    chat, emb, mixed = rows
    assert chat["chat_tokens_per_s"] > 0 and chat["embeddings_per_s"] is None
    assert emb["embeddings_per_s"] > 0 and emb["chat_tokens_per_s"] is None
    assert_both_sides(mixed)
    assert mixed["label"] == f"{live.url} + {live.url}/v1/embeddings"


def test_a_load_of_nothing_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(bench("--chat-streams", "0", "--embedding-clients", "0"))
    assert "needs --chat-streams or --embedding-clients" in str(exc.value.code)
