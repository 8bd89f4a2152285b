"""Embeddings benchmark: throughput and latency of any OpenAI-style embeddings endpoint, and
an in-process `SentenceTransformer.encode` ceiling measured on the same texts."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import httpx

from modelserve.loadgen.chat import AiohttpClient, Client, HttpxClient, percentile

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
         "small", "birds", "sing", "about", "rivers", "mountains", "cities", "and", "quiet",
         "gardens", "in", "the", "early", "morning", "light"]


def make_text(index: int, words: int) -> str:
    """Distinct texts of a given length (a word is about one token for MiniLM)."""
    picked = [WORDS[(index * 7 + i * 3) % len(WORDS)] for i in range(words)]
    return f"{index} " + " ".join(picked)


def embeddings_body(model: str, n: int, per_request: int, words: int) -> dict[str, Any]:
    """The n-th request of a run: `per_request` distinct texts of `words` words."""
    texts = [make_text(n * per_request + i, words) for i in range(per_request)]
    return {"model": model, "input": texts[0] if per_request == 1 else texts}


async def embed_request(client: Client, url: str, body: dict[str, Any],
                        expected: int) -> str | None:
    """One embeddings request: None when it got `expected` vectors back, else what went
    wrong (any server's error, in a line)."""
    try:
        status, payload = await client.post_json(url, body)
        if status != 200:
            return f"HTTP {status}: {payload[:200].decode(errors='replace')}"
        got = len(json.loads(payload)["data"])
    except (aiohttp.ClientError, httpx.HTTPError, TimeoutError, ValueError, KeyError,
            TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None if got == expected else f"{got} vectors for {expected} inputs"


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


@asynccontextmanager
async def open_clients(kind: str, concurrency: int) -> AsyncIterator[list[Client]]:
    """One client per worker, as `kind` says:
    - `aiohttp`: a session of one kept-alive connection each (the default: the load
      generator shares the machine with the server, and aiohttp costs ~0.3 ms of CPU a
      request against httpx's ~1.5 ms);
    - `httpx`: an `httpx.AsyncClient` of one connection each, as many separate apps are;
    - `httpx-shared`: one `httpx.AsyncClient` whose pool all workers share, as one app
      fanning out is. Its pool (httpcore 1.0) rescans every connection, polling idle sockets,
      on each request and each release, so its CPU per request grows with the connections:
      against a batching server whose answers come in bursts, it is the client that tops
      out (docs/benchmarks.md)."""
    timeout = 300.0
    if kind == "aiohttp":
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                          timeout=aiohttp.ClientTimeout(total=timeout))
                    for _ in range(concurrency)]
        try:
            yield [AiohttpClient(session) for session in sessions]
        finally:
            await asyncio.gather(*(session.close() for session in sessions))
        return
    pools = 1 if kind == "httpx-shared" else concurrency
    https = [httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(
        max_connections=concurrency // pools, max_keepalive_connections=concurrency // pools))
        for _ in range(pools)]
    try:
        yield [HttpxClient(https[i % pools]) for i in range(concurrency)]
    finally:
        await asyncio.gather(*(http.aclose() for http in https))


async def run_level(url: str, path: str, model: str, concurrency: int, per_request: int,
                    words: int, requests: int, label: str, client: str = "aiohttp"
                    ) -> EmbedResult:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    endpoint = f"{url}{path}"

    async def worker(client: Client) -> None:
        nonlocal errors
        for n in counter:
            started = time.perf_counter()
            error = await embed_request(client, endpoint,
                                        embeddings_body(model, n, per_request, words), per_request)
            latencies.append((time.perf_counter() - started) * 1000)
            errors += error is not None

    async with open_clients(client, concurrency) as clients:
        # Before the clock, each worker sends one untimed request of the level's shape: its
        # connection is open and the server has run the level's shapes once.
        await asyncio.gather(*(embed_request(c, endpoint, embeddings_body(
            model, requests + i, per_request, words), per_request)
            for i, c in enumerate(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        wall = time.perf_counter() - started
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
                    requests, args.label or args.url, args.client)))
                print(json.dumps(asdict(rows[-1])), flush=True)
    if args.json_out:
        with open(args.json_out, "a") as fh:
            fh.writelines(json.dumps(asdict(r)) + "\n" for r in rows)
    print(markdown(rows))
