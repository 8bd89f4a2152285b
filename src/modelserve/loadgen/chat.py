"""Streaming chat benchmark: TTFT and inter-token latency percentiles, aggregate tok/s, errors.

Works against any OpenAI-compatible server, so peers are measured with the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiohttp
import httpx

from modelserve.loadgen.surfaces import SURFACES, Surface

TOPICS = ["a lighthouse keeper", "a lost robot", "a dragon who bakes", "a city under the sea",
          "a time-travelling cat", "the last tree on Mars", "a haunted violin", "a desert train",
          "a talking river", "an old map", "a clockwork bird", "a snow festival",
          "a pirate librarian", "a moon garden", "a midnight market", "a forgotten castle"]


@dataclass
class RequestResult:
    ok: bool
    tokens: int = 0
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class LevelResult:
    label: str
    concurrency: int
    requests: int
    errors: int
    completion_tokens: int
    wall_s: float
    tokens_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    error_samples: list[str]


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[rank]


async def one_request(client: Client, url: str, surface: Surface,
                      body: dict[str, Any]) -> RequestResult:
    started = time.perf_counter()
    last = started
    result = RequestResult(ok=False)
    chunk_tokens = 0
    done = False
    try:
        async with client.stream(f"{url}{surface.path}", body) as (status, lines):
            if status != 200:
                text = "".join([line async for line in lines])[:200]
                return RequestResult(ok=False, error=f"HTTP {status}: {text}")
            async for raw in lines:
                line = surface.read(raw)
                if line.error is not None:
                    return RequestResult(ok=False, error=line.error)
                if line.tokens is not None:
                    result.tokens = line.tokens
                if line.text:
                    now = time.perf_counter()
                    if result.ttft is None:
                        result.ttft = now - started
                    else:
                        result.gaps.append(now - last)
                    last = now
                    chunk_tokens += 1
                if line.done:
                    done = True
                    break
    except (httpx.HTTPError, aiohttp.ClientError, json.JSONDecodeError) as exc:
        return RequestResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
    if not done:  # a stream cut short is an error even when it said nothing
        return RequestResult(ok=False, error="stream ended without its last event")
    result.tokens = result.tokens or chunk_tokens
    result.ok = True
    return result


class Client(Protocol):
    def stream(self, url: str, body: dict[str, Any]
               ) -> AbstractAsyncContextManager[tuple[int, AsyncIterator[str]]]: ...


class HttpxClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]
                     ) -> AsyncIterator[tuple[int, AsyncIterator[str]]]:
        async with self.client.stream("POST", url, json=body) as resp:
            yield resp.status_code, resp.aiter_lines()


class AiohttpClient:
    """The second load generator: another HTTP stack reading the same streams."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]
                     ) -> AsyncIterator[tuple[int, AsyncIterator[str]]]:
        async with self.session.post(url, json=body) as resp:
            async def lines() -> AsyncIterator[str]:
                async for raw in resp.content:
                    yield raw.decode().rstrip("\r\n")

            yield resp.status, lines()


# The structured-output workload: a JSON story that cannot end before max_tokens (at least 8
# paragraphs), so constrained and free text are compared over the same number of tokens.
STORY_SCHEMA = {"type": "object", "additionalProperties": False,
                "required": ["title", "paragraphs"],
                "properties": {"title": {"type": "string", "maxLength": 60},
                               "paragraphs": {"type": "array", "minItems": 8,
                                              "items": {"type": "string", "maxLength": 400}}}}
WORKLOADS: dict[str, dict[str, Any]] = {
    "text": {},
    "json": {"response_format": {"type": "json_schema",
                                 "json_schema": {"name": "story", "schema": STORY_SCHEMA}}},
}


async def run_level(url: str, model: str, concurrency: int, max_tokens: int, per_client: int,
                    label: str, api_key: str | None, workload: str = "text",
                    surface: str = "chat", client: str = "httpx") -> LevelResult:
    dialect = SURFACES[surface]
    headers = {**dialect.headers, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}

    async def client_loop(http: Client, index: int) -> list[RequestResult]:
        results = []
        for round_ in range(per_client):
            topic = TOPICS[(index + round_ * 7) % len(TOPICS)]
            body = {**dialect.body(model, f"Write a long story about {topic}.", max_tokens),
                    **WORKLOADS[workload]}
            results.append(await one_request(http, url, dialect, body))
        return results

    async def all_clients(http: Client) -> list[list[RequestResult]]:
        return await asyncio.gather(*(client_loop(http, i) for i in range(concurrency)))

    started = time.perf_counter()
    if client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency + 4)
        async with aiohttp.ClientSession(connector=connector, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=600)) as session:
            nested = await all_clients(AiohttpClient(session))
    else:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), headers=headers,
                                     limits=httpx.Limits(max_connections=concurrency + 4)
                                     ) as http:
            nested = await all_clients(HttpxClient(http))
    wall = time.perf_counter() - started
    results = [r for rs in nested for r in rs]
    good = [r for r in results if r.ok]
    ttfts = [r.ttft * 1000 for r in good if r.ttft is not None]
    gaps = [g * 1000 for r in good for g in r.gaps]
    tokens = sum(r.tokens for r in good)
    return LevelResult(
        label=label, concurrency=concurrency, requests=len(results),
        errors=len(results) - len(good), completion_tokens=tokens, wall_s=round(wall, 3),
        tokens_per_s=round(tokens / wall, 2) if wall else 0.0,
        ttft_p50_ms=_round(percentile(ttfts, 50)), ttft_p99_ms=_round(percentile(ttfts, 99)),
        itl_p50_ms=_round(percentile(gaps, 50)), itl_p99_ms=_round(percentile(gaps, 99)),
        error_samples=sorted({r.error or "" for r in results if not r.ok})[:3])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def markdown(rows: list[LevelResult]) -> str:
    lines = ["| server | conc | requests | errors | tok/s | TTFT p50 ms | TTFT p99 ms "
             "| ITL p50 ms | ITL p99 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.label} | {r.concurrency} | {r.requests} | {r.errors} "
                     f"| {r.tokens_per_s} | {r.ttft_p50_ms} | {r.ttft_p99_ms} "
                     f"| {r.itl_p50_ms} | {r.itl_p99_ms} |")
    return "\n".join(lines)


def run_chat_bench(args: argparse.Namespace) -> None:
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    label = args.label or args.url
    rows = []
    for level in levels:
        row = asyncio.run(run_level(args.url.rstrip("/"), args.model, level, args.max_tokens,
                                    args.requests_per_client, label, args.api_key,
                                    args.workload, args.surface, args.client))
        rows.append(row)
        print(json.dumps(asdict(row)), flush=True)
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(json.dumps(asdict(row)) + "\n")
    print(markdown(rows))
