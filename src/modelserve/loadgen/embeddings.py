"""Embeddings benchmark: throughput and latency of any OpenAI-style embeddings endpoint, and
an in-process `SentenceTransformer.encode` ceiling measured on the same texts."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from modelserve.loadgen.chat import percentile

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
         "small", "birds", "sing", "about", "rivers", "mountains", "cities", "and", "quiet",
         "gardens", "in", "the", "early", "morning", "light"]


def make_text(index: int, words: int) -> str:
    """Distinct texts of a given length (a word is about one token for MiniLM)."""
    picked = [WORDS[(index * 7 + i * 3) % len(WORDS)] for i in range(words)]
    return f"{index} " + " ".join(picked)


@dataclass
class EmbedResult:
    label: str
    concurrency: int
    inputs_per_request: int
    words: int
    requests: int
    errors: int
    embeddings_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None


async def run_level(url: str, path: str, model: str, concurrency: int, per_request: int,
                    words: int, requests: int, label: str) -> EmbedResult:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    # aiohttp, one session (one kept-alive connection) per worker: the load generator shares
    # the machine with the server, and httpx cost ~1.5 ms of CPU per request against
    # aiohttp's ~0.3 ms; a single pool shared by 64 workers capped every server near 100
    # emb/s. Before the clock, each worker sends one untimed request of the level's shape:
    # its connection is open and the server has run the level's shapes once.
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                      timeout=aiohttp.ClientTimeout(total=300))
                for _ in range(concurrency)]

    def body(n: int) -> dict[str, Any]:
        texts = [make_text(n * per_request + i, words) for i in range(per_request)]
        return {"model": model, "input": texts[0] if per_request == 1 else texts}

    async def post(session: aiohttp.ClientSession, n: int) -> bool:
        async with session.post(f"{url}{path}", json=body(n)) as resp:
            payload = await resp.read()
        return resp.status == 200 and len(json.loads(payload)["data"]) == per_request

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for n in counter:
            started = time.perf_counter()
            try:
                ok = await post(session, n)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok

    try:
        await asyncio.gather(*(post(s, requests + i) for i, s in enumerate(sessions)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for session in sessions))
        wall = time.perf_counter() - started
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    done = (requests - errors) * per_request
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return EmbedResult(label, concurrency, per_request, words, requests, errors,
                       round(done / wall, 1), None if p50 is None else round(p50, 1),
                       None if p99 is None else round(p99, 1))


def in_process(model_dir: str, per_request: int, words: int, requests: int,
               threads: int | None) -> EmbedResult:
    """The ceiling for a server: encode the same texts in-process, batch 32."""
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    texts = [make_text(i, words) for i in range(per_request * requests)]
    model.encode(texts[:32])  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=32)
    wall = time.perf_counter() - started
    return EmbedResult("sentence-transformers in-process", 0, per_request, words, requests, 0,
                       round(len(texts) / wall, 1), None, None)


def markdown(rows: list[EmbedResult]) -> str:
    lines = ["| server | clients | inputs/req | words | emb/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.label} | {r.concurrency or '-'} | {r.inputs_per_request} | {r.words} "
              f"| {r.embeddings_per_s} | {r.latency_p50_ms} | {r.latency_p99_ms} "
              f"| {r.errors}/{r.requests} |" for r in rows]
    return "\n".join(lines)


def run_embeddings_bench(args: argparse.Namespace) -> None:
    rows: list[EmbedResult] = []
    for words in [int(w) for w in args.words.split(",")]:
        if args.in_process:
            rows.append(in_process(args.in_process, 1, words, args.total_inputs, args.threads))
            print(json.dumps(asdict(rows[-1])), flush=True)
        for per_request in [int(n) for n in args.inputs.split(",")]:
            for level in [int(c) for c in args.concurrency.split(",")]:
                # At least two requests per client: with one each, a level is a single burst
                # (ramp-up and drain, no steady state) and its figure swings by ±20 %.
                requests = max(8, args.total_inputs // per_request, 2 * level)
                rows.append(asyncio.run(run_level(
                    args.url.rstrip("/"), args.path, args.model, level, per_request, words,
                    requests, args.label or args.url)))
                print(json.dumps(asdict(rows[-1])), flush=True)
    if args.json_out:
        with open(args.json_out, "a") as fh:
            fh.writelines(json.dumps(asdict(r)) + "\n" for r in rows)
    print(markdown(rows))
