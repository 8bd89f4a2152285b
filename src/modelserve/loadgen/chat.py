"""Streaming chat benchmark: TTFT and inter-token latency percentiles, aggregate tok/s, errors.

Works against any OpenAI-compatible server, so peers are measured with the same client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
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
    latency: float | None = None  # request sent to the stream's last event
    content: str = ""  # the answer's text (Chat Completions): multi-turn histories carry it
    usage: dict[str, Any] | None = None  # the server's usage object, where it sent one
    timings: dict[str, Any] | None = None  # llama-server's, with its speculative drafts
    turn: int = 0  # multi-turn: which turn of its conversation (1-based); 0 otherwise


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
    # The workloads beyond plain text (chat_workloads.py) read these; None where no request
    # said (a server that reports no cached or prediction tokens is not one that cached none).
    workload: str = "text"
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, summed
    accepted_prediction_tokens: int | None = None  # usage.completion_tokens_details
    rejected_prediction_tokens: int | None = None
    draft_tokens: int | None = None  # llama-server's timings.draft_n (its own speculation)
    draft_accepted_tokens: int | None = None
    ttft_p50_by_turn_ms: list[float | None] | None = None  # multi-turn: turn 1, 2, ...


def cell(value: object) -> str:
    """A table cell: the value, or "-" where it was not reported."""
    return "-" if value is None else str(value)


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
    parts: list[str] = []
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
                if line.usage is not None:
                    result.usage = line.usage
                if line.timings is not None:
                    result.timings = line.timings
                if line.content:
                    parts.append(line.content)
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
    result.latency = time.perf_counter() - started
    result.content = "".join(parts)
    result.ok = True
    return result


class Client(Protocol):
    def stream(self, url: str, body: dict[str, Any]
               ) -> AbstractAsyncContextManager[tuple[int, AsyncIterator[str]]]: ...

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """A plain (not streamed) POST: its status and whole body."""
        ...


class HttpxClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]
                     ) -> AsyncIterator[tuple[int, AsyncIterator[str]]]:
        async with self.client.stream("POST", url, json=body) as resp:
            yield resp.status_code, resp.aiter_lines()

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        resp = await self.client.post(url, json=body)
        return resp.status_code, resp.content


class AiohttpClient:
    """The second load generator: another HTTP stack reading the same streams."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def _post(self, url: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST, once more on a fresh connection when a kept-alive one turns out dead before
        any answer: llama-server closes the connection after each stream without saying
        `Connection: close`, and aiohttp, unlike curl and httpx, does not check an idle
        connection before reusing it ("Can not write request body" on every other request)."""
        try:
            return await self.session.post(url, json=body)
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            return await self.session.post(url, json=body)

    @asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]
                     ) -> AsyncIterator[tuple[int, AsyncIterator[str]]]:
        async with await self._post(url, body) as resp:
            async def lines() -> AsyncIterator[str]:
                async for raw in resp.content:
                    yield raw.decode().rstrip("\r\n")

            yield resp.status, lines()

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        async with await self._post(url, body) as resp:
            return resp.status, await resp.read()


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


@asynccontextmanager
async def open_client(kind: str, concurrency: int, headers: dict[str, str]
                      ) -> AsyncIterator[Client]:
    """One HTTP stack for a level, its pool sized so that no stream waits for a connection."""
    if kind == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency + 4)
        async with aiohttp.ClientSession(connector=connector, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=600)) as session:
            yield AiohttpClient(session)
    else:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), headers=headers,
                                     limits=httpx.Limits(max_connections=concurrency + 4)
                                     ) as http:
            yield HttpxClient(http)


def auth_headers(dialect: Surface, api_key: str | None) -> dict[str, str]:
    return {**dialect.headers, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}


async def run_level(url: str, model: str, concurrency: int, max_tokens: int, per_client: int,
                    label: str, api_key: str | None, workload: str = "text",
                    surface: str = "chat", client: str = "httpx",
                    ignore_eos: bool = False) -> LevelResult:
    dialect = SURFACES[surface]
    # ignore_eos: every answer runs to max_tokens (GuideLLM's fixed-length outputs), so servers
    # whose models stop at different points still compare over the same number of tokens.
    extra = {**WORKLOADS[workload], **({"ignore_eos": True} if ignore_eos else {})}

    async def client_loop(http: Client, index: int) -> list[RequestResult]:
        results = []
        for round_ in range(per_client):
            topic = TOPICS[(index + round_ * 7) % len(TOPICS)]
            body = {**dialect.body(model, f"Write a long story about {topic}.", max_tokens),
                    **extra}
            results.append(await one_request(http, url, dialect, body))
        return results

    started = time.perf_counter()
    async with open_client(client, concurrency, auth_headers(dialect, api_key)) as http:
        nested = await asyncio.gather(*(client_loop(http, i) for i in range(concurrency)))
    wall = time.perf_counter() - started
    return level_result(label, concurrency, [r for rs in nested for r in rs], wall,
                        workload + ("+ignore_eos" if ignore_eos else ""))


def level_result(label: str, concurrency: int, results: list[RequestResult], wall: float,
                 workload: str = "text") -> LevelResult:
    good = [r for r in results if r.ok]
    ttfts = [r.ttft * 1000 for r in good if r.ttft is not None]
    gaps = [g * 1000 for r in good for g in r.gaps]
    latencies = [r.latency * 1000 for r in good if r.latency is not None]
    tokens = sum(r.tokens for r in good)
    turns = max((r.turn for r in good), default=0)
    by_turn = [_round(percentile([r.ttft * 1000 for r in good
                                  if r.turn == t and r.ttft is not None], 50))
               for t in range(1, turns + 1)]
    return LevelResult(
        label=label, concurrency=concurrency, requests=len(results),
        errors=len(results) - len(good), completion_tokens=tokens, wall_s=round(wall, 3),
        tokens_per_s=round(tokens / wall, 2) if wall else 0.0,
        ttft_p50_ms=_round(percentile(ttfts, 50)), ttft_p99_ms=_round(percentile(ttfts, 99)),
        itl_p50_ms=_round(percentile(gaps, 50)), itl_p99_ms=_round(percentile(gaps, 99)),
        error_samples=sorted({r.error or "" for r in results if not r.ok})[:3],
        workload=workload, latency_p50_ms=_round(percentile(latencies, 50)),
        latency_p99_ms=_round(percentile(latencies, 99)),
        prompt_tokens=_sum(_get(r.usage, "prompt_tokens") for r in good),
        cached_tokens=_sum(_get(r.usage, "prompt_tokens_details", "cached_tokens")
                           for r in good),
        accepted_prediction_tokens=_sum(_get(r.usage, "completion_tokens_details",
                                             "accepted_prediction_tokens") for r in good),
        rejected_prediction_tokens=_sum(_get(r.usage, "completion_tokens_details",
                                             "rejected_prediction_tokens") for r in good),
        draft_tokens=_sum(_get(r.timings, "draft_n") for r in good),
        draft_accepted_tokens=_sum(_get(r.timings, "draft_n_accepted") for r in good),
        ttft_p50_by_turn_ms=by_turn if turns else None)


def _get(obj: Any, *keys: str) -> int | None:
    """obj[k1][k2]... as an int, or None where any level is missing (servers differ)."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, int) and not isinstance(obj, bool) else None


def _sum(values: Iterable[int | None]) -> int | None:
    """The sum of what was reported; None when no request reported anything."""
    seen = [v for v in values if v is not None]
    return sum(seen) if seen else None


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


# Per workload, what --concurrency and --max-tokens default to: multiturn's 16 workers are the
# server's 16 slots; editing's 400 tokens hold the whole rewritten module.
DEFAULTS: dict[str, tuple[str, int]] = {"text": ("1,8,32", 128), "json": ("1,8,32", 128),
                                        "multiturn": ("16", 64), "editing": ("1,8", 400)}
