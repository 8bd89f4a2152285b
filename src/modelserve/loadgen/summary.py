"""Summarise a benchmark JSONL file (chat, chat workloads, surfaces, embeddings or mixed rows):
median per server and level, ratios to a baseline server.

    python -m modelserve.loadgen.summary FILE [BASELINE [workloads|surfaces|embeddings|mixed]]"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def summarise(path: Path, baseline: str = "modelserve") -> str:
    runs: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs[(row["label"], row["concurrency"])].append(row)
    labels = sorted({label for label, _ in runs}, key=lambda x: (x != baseline, x))
    levels = sorted({level for _, level in runs})
    out = [f"| server | conc | runs | tok/s (median) | vs {baseline} | TTFT p50 ms | ITL p50 ms "
           "| errors |", "|---|---|---|---|---|---|---|---|"]
    for level in levels:
        base = runs.get((baseline, level))
        base_tps = statistics.median(r["tokens_per_s"] for r in base) if base else None
        for label in labels:
            rows = runs.get((label, level))
            if not rows:
                continue
            tps = statistics.median(r["tokens_per_s"] for r in rows)
            ratio = f"{base_tps / tps:.2f}x" if base_tps and tps and label != baseline else "-"
            ttft = statistics.median(r["ttft_p50_ms"] or 0 for r in rows)
            itl = statistics.median(r["itl_p50_ms"] or 0 for r in rows)
            errors = sum(int(r["errors"]) for r in rows)
            total = sum(int(r["requests"]) for r in rows)
            out.append(f"| {label} | {level} | {len(rows)} | {tps:.1f} | {ratio} | {ttft:.0f} "
                       f"| {itl:.1f} | {errors}/{total} |")
    return "\n".join(out)


def summarise_workloads(path: Path, baseline: str = "modelserve") -> str:
    """Chat rows of any workload (bench/chat_workloads_vs_peers.sh): medians over runs per
    workload, server and level, and each "vs" column as the baseline's advantage (> 1: the
    baseline does better): its tok/s ÷ this row's, this row's TTFT or latency ÷ its."""
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs[(row.get("workload", "text"), row["concurrency"], row["label"])].append(row)
    out = [f"| workload | server | conc | runs | tok/s | vs {baseline} | TTFT p50 ms "
           f"| vs {baseline} | TTFT p99 ms | latency p50 ms | vs {baseline} "
           "| cached / prompt tok | accepted / rejected prediction tok "
           "| drafts accepted / drafted | TTFT p50 ms by turn | errors |",
           "|" + "---|" * 16]
    for workload, level, label in sorted(runs, key=lambda k: (k[0], k[1], k[2] != baseline,
                                                             k[2])):
        rows = runs[(workload, level, label)]
        base = runs.get((workload, level, baseline))
        tps, ttft, ttft99, latency = (_median(rows, key) for key in (
            "tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "latency_p50_ms"))
        vs = ["-", "-", "-"]
        if base and label != baseline:
            vs = [_ratio(_median(base, "tokens_per_s"), tps),
                  _ratio(ttft, _median(base, "ttft_p50_ms")),
                  _ratio(latency, _median(base, "latency_p50_ms"))]
        cached, prompt = _total(rows, "cached_tokens"), _total(rows, "prompt_tokens")
        share = f" ({100 * cached / prompt:.0f} %)" if cached is not None and prompt else ""
        turns = [r.get("ttft_p50_by_turn_ms") or [] for r in rows]
        by_turn = " / ".join(
            _fmt(statistics.median(t[i] for t in turns if len(t) > i and t[i] is not None)
                 if any(len(t) > i and t[i] is not None for t in turns) else None)
            for i in range(max(map(len, turns))))
        errors = sum(int(r["errors"]) for r in rows)
        total = sum(int(r["requests"]) for r in rows)
        out.append(
            f"| {workload} | {label} | {level} | {len(rows)} | {_fmt(tps)} | {vs[0]} "
            f"| {_fmt(ttft, 0)} | {vs[1]} | {_fmt(ttft99, 0)} | {_fmt(latency, 0)} | {vs[2]} "
            f"| {_fmt(cached, 0)} / {_fmt(prompt, 0)}{share} "
            f"| {_fmt(_total(rows, 'accepted_prediction_tokens'), 0)} / "
            f"{_fmt(_total(rows, 'rejected_prediction_tokens'), 0)} "
            f"| {_fmt(_total(rows, 'draft_accepted_tokens'), 0)} / "
            f"{_fmt(_total(rows, 'draft_tokens'), 0)} | {by_turn or '-'} "
            f"| {errors}/{total} |")
    return "\n".join(out)


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def _total(rows: list[dict[str, Any]], key: str) -> int | None:
    """Summed over runs; None where no run's server reported it (not the same as 0)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summarise_embeddings(path: Path, baseline: str) -> str:
    """Embeddings rows (`modelserve bench embeddings`): emb/s per server and workload, and
    `baseline` ÷ each (as `summarise` does); per run too, since these machines are noisy."""
    runs: dict[tuple[str, int, int, int], list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            key = (row["label"], row["concurrency"], row["inputs_per_request"], row["words"])
            runs[key].append(row["embeddings_per_s"])
    labels = sorted({k[0] for k in runs}, key=lambda x: (x != baseline, x))
    workloads = sorted({k[1:] for k in runs})
    out = [f"| server | clients | inputs | words | emb/s (median) | vs {baseline} | per run |",
           "|---|---|---|---|---|---|---|"]
    for workload in workloads:
        base = runs.get((baseline, *workload))
        base_median = statistics.median(base) if base else None
        for label in labels:
            rows = runs.get((label, *workload))
            if not rows:
                continue
            median = statistics.median(rows)
            ratio = f"{base_median / median:.2f}x" if base_median and median and \
                label != baseline else "-"
            each = " / ".join(f"{r:.0f}" for r in rows)
            out.append(f"| {label} | {workload[0]} | {workload[1]} | {workload[2]} "
                       f"| {median:.1f} | {ratio} | {each} |")
    return "\n".join(out)


def summarise_mixed(path: Path, baseline: str = "modelserve") -> str:
    """`modelserve bench mixed` rows (bench/mixed_vs_peers.sh): medians over runs per phase,
    load and server; each "vs" column is the baseline's throughput ÷ this row's (> 1: the
    baseline does better), and "both" the lower of the two: what it achieves on both at once."""
    runs: dict[tuple[str, int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs[(row["phase"], row["chat_streams"], row["embedding_clients"],
                  row["label"])].append(row)
    order = {"mixed": 0, "chat-alone": 1, "embeddings-alone": 2}
    out = [f"| phase | server | streams | clients | runs | chat tok/s | vs {baseline} "
           f"| ITL p99 ms | emb/s | vs {baseline} | emb p99 ms | both | errors chat / emb |",
           "|" + "---|" * 13]
    for key in sorted(runs, key=lambda k: (order.get(k[0], 3), k[1], k[2], k[3] != baseline,
                                           k[3])):
        phase, streams, clients, label = key
        rows, base = runs[key], runs.get((phase, streams, clients, baseline))
        tps, emb = _median(rows, "chat_tokens_per_s"), _median(rows, "embeddings_per_s")
        vs = ["-", "-", "-"]
        if base and label != baseline:
            ratios = [_median(base, "chat_tokens_per_s"), _median(base, "embeddings_per_s")]
            vs[:2] = [_ratio(ratios[0], tps), _ratio(ratios[1], emb)]
            both = [b / x for b, x in ((ratios[0], tps), (ratios[1], emb)) if b and x]
            vs[2] = f"{min(both):.2f}x" if len(both) == 2 else "-"
        errors = (f"{sum(r['chat_errors'] for r in rows)}/{sum(r['chat_requests'] for r in rows)}"
                  f" / {sum(r['embedding_errors'] for r in rows)}"
                  f"/{sum(r['embedding_requests'] for r in rows)}")
        out.append(f"| {phase} | {label} | {streams} | {clients} | {len(rows)} | {_fmt(tps)} "
                   f"| {vs[0]} | {_fmt(_median(rows, 'itl_p99_ms'))} | {_fmt(emb)} | {vs[1]} "
                   f"| {_fmt(_median(rows, 'embedding_p99_ms'))} | {vs[2]} | {errors} |")
    return "\n".join(out)


def summarise_surfaces(path: Path, baseline: str = "chat") -> str:
    """Rows labelled SURFACE/CLIENT (bench/surfaces.sh): median tok/s of each, and each ÷
    the baseline surface's with the same client and level (1.00: the dialect costs nothing)."""
    runs: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            surface, client = row["label"].split("/")
            runs[(surface, client, row["concurrency"])].append(row["tokens_per_s"])
    out = [f"| surface | client | streams | tok/s (median) | ÷ {baseline} | per run |",
           "|---|---|---|---|---|---|"]
    for surface, client, level in sorted(runs, key=lambda k: (k[1], k[2], k[0] != baseline)):
        rows = runs[(surface, client, level)]
        median = statistics.median(rows)
        base = runs.get((baseline, client, level))
        ratio = f"{median / statistics.median(base):.3f}" if base else "-"
        each = " / ".join(f"{r:.0f}" for r in rows)
        out.append(f"| {surface} | {client} | {level} | {median:.1f} | {ratio} | {each} |")
    cpu = path.with_name(path.name + ".cpu")
    return "\n".join(out) + ("\n\n" + api_cpu(path, cpu, baseline) if cpu.exists() else "")


def api_cpu(path: Path, cpu: Path, baseline: str) -> str:
    """The API process's CPU per completion token, per surface and client (bench/surfaces.sh
    samples it around each surface's run, all levels together)."""
    seconds: dict[str, float] = defaultdict(float)
    tokens: dict[str, int] = defaultdict(int)
    for line in cpu.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            seconds[row["label"]] += row["api_cpu_s"] / row["tick"]
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            tokens[row["label"]] += row["completion_tokens"]
    out = [f"| surface | client | API-process CPU µs / token | ÷ {baseline} |", "|---|---|---|---|"]
    for label in sorted(seconds, key=lambda x: (x.split("/")[1], x.split("/")[0] != baseline)):
        surface, client = label.split("/")
        per = seconds[label] / tokens[label] * 1e6 if tokens[label] else 0.0
        base_label = f"{baseline}/{client}"
        base = seconds[base_label] / tokens[base_label] * 1e6 if tokens[base_label] else 0.0
        ratio = f"{per / base:.3f}" if base else "-"
        out.append(f"| {surface} | {client} | {per:.0f} | {ratio} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[3] == "surfaces":
        print(summarise_surfaces(Path(sys.argv[1]), sys.argv[2]))
    elif len(sys.argv) > 3 and sys.argv[3] == "workloads":
        print(summarise_workloads(Path(sys.argv[1]), sys.argv[2]))
    elif len(sys.argv) > 3 and sys.argv[3] == "mixed":
        print(summarise_mixed(Path(sys.argv[1]), sys.argv[2]))
    elif len(sys.argv) > 3 and sys.argv[3] == "embeddings":
        print(summarise_embeddings(Path(sys.argv[1]), sys.argv[2]))
    else:
        print(summarise(Path(sys.argv[1]), *sys.argv[2:3]))
