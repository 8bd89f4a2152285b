"""The mixed-load benchmark's arithmetic: what falls inside the measured window, the table, and
the summary over rounds (modelserve ÷ the peers, both sides at once)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from modelserve.loadgen.chat import RequestResult
from modelserve.loadgen.mixed import (
    MixedResult,
    TimedChat,
    TimedEmbedding,
    markdown,
    phases,
    stagger,
    summarise_chat,
    summarise_embeddings,
    token_times,
)
from modelserve.loadgen.summary import summarise_mixed


def stream(sent: float, ttft: float, gaps: list[float], tokens: int) -> TimedChat:
    return TimedChat(sent, RequestResult(ok=True, tokens=tokens, ttft=ttft, gaps=gaps))


def row(phase: str = "mixed", label: str = "s") -> MixedResult:
    return MixedResult(label, phase, 2, 4, 2.5, "httpx")


def test_token_times_follow_the_gaps() -> None:
    assert token_times(stream(10.0, 1.0, [0.5, 0.25], 3)) == [11.0, 11.5, 11.75]
    assert token_times(TimedChat(0.0, RequestResult(ok=False, error="x"))) == []


def test_chat_counts_only_what_arrived_inside_the_window() -> None:
    # Chunks at 1, 2, 3, 4, 5 carrying 2 tokens each; the window [2, 4.5) holds 2, 3 and 4.
    early = stream(0.0, 1.0, [1.0, 1.0, 1.0, 1.0], 10)
    late = stream(3.0, 0.5, [0.2], 2)  # sent inside: its TTFT counts; chunks at 3.5 and 3.7
    waited = stream(1.5, 0.75, [], 1)  # sent before, first chunk inside (2.25): its TTFT counts
    failed = TimedChat(3.0, RequestResult(ok=False, error="HTTP 500: boom"))
    result = row()
    summarise_chat([early, late, waited, failed], 2.0, 4.5, result)
    assert result.chat_tokens == 9  # 3 chunks x 2 + 2 x 1 + 1
    assert result.chat_tokens_per_s == round(9 / 2.5, 1)
    # early's first token came before the window: its TTFT is not the window's.
    assert (result.ttft_p50_ms, result.ttft_p99_ms) == (500.0, 750.0)
    assert result.itl_p50_ms == 1000.0 and result.itl_p99_ms == 1000.0  # gaps ending at 2, 3, 4
    assert (result.chat_requests, result.chat_errors) == (4, 1)


def test_embeddings_count_requests_ending_inside_the_window() -> None:
    samples = [TimedEmbedding(0.0, 1.0, None),  # ended before the window
               TimedEmbedding(1.5, 2.0, None), TimedEmbedding(2.5, 3.5, None),
               TimedEmbedding(3.0, 3.1, "HTTP 503: busy"),
               TimedEmbedding(4.0, 5.0, None)]  # ended after it
    result = row()
    summarise_embeddings(samples, 2.0, 4.5, result)
    assert result.embeddings_per_s == round(2 / 2.5, 1)
    assert (result.embedding_p50_ms, result.embedding_p99_ms) == (500.0, 1000.0)
    assert (result.embedding_requests, result.embedding_errors) == (5, 1)


def test_streams_start_staggered() -> None:
    assert [stagger(128, i, 4) for i in range(4)] == [32, 64, 96, 128]
    assert stagger(2, 0, 8) == 1


def test_phases_put_the_alone_runs_first() -> None:
    assert phases(8, 32, alone=False) == [("mixed", 8, 32)]
    assert phases(8, 32, alone=True) == [("chat-alone", 8, 0), ("embeddings-alone", 0, 32),
                                         ("mixed", 8, 32)]
    assert phases(0, 32, alone=True) == [("mixed", 0, 32)]  # nothing to mix: no alone runs


def test_markdown_shows_what_mixing_costs() -> None:
    chat, emb, mixed = row("chat-alone"), row("embeddings-alone"), row()
    chat.chat_tokens_per_s, emb.embeddings_per_s = 200.0, 400.0
    mixed.chat_tokens_per_s, mixed.embeddings_per_s = 150.0, 100.0
    lines = markdown([chat, emb, mixed]).splitlines()
    assert lines[-1].startswith("| s | mixed | 2 | 4 | 150.0 | 0.75x |")
    assert "| 100.0 | 0.25x |" in lines[-1]
    assert "| s | chat-alone | 2 | 4 | 200.0 | - |" in lines[2]


def test_summary_gives_both_ratios_and_the_lower(tmp_path: Path) -> None:
    rows = []
    for label, tps, emb in [("modelserve", 300.0, 900.0), ("modelserve", 340.0, 1100.0),
                            ("peers", 200.0, 400.0)]:
        r = row(label=label)
        r.chat_tokens_per_s, r.embeddings_per_s, r.chat_requests = tps, emb, 10
        rows.append(r)
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    table = summarise_mixed(path, "modelserve")
    assert "| mixed | modelserve | 2 | 4 | 2 | 320.0 | - |" in table
    assert "| mixed | peers | 2 | 4 | 1 | 200.0 | 1.60x | - | 400.0 | 2.50x | - | 1.60x " \
           "| 0/10 / 0/0 |" in table
