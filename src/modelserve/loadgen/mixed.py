"""`modelserve bench mixed`: N streaming chat requests and M embeddings clients at once, the load
of a RAG app, against one server or against two (a chat server and an embeddings server side by
side), so one server for every model compares with a pair of single-kind peers.

Every phase runs a warm-up, then a measured window of fixed length; the load stays on until the
window ends, and what is in flight then is let finish (not cut: a cut stream is a client
disconnect the server must clean up before the next phase) but counted only up to the window's
end. Chat tokens and embeddings are counted when they arrive, so a request straddling an edge
counts for the part inside. `--alone` adds each side alone, same durations, before the mixed
phase: what sharing the cores costs each side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from modelserve.loadgen.chat import (
    TOPICS,
    Client,
    RequestResult,
    auth_headers,
    cell,
    one_request,
    open_client,
    percentile,
)
from modelserve.loadgen.embeddings import embed_request, embeddings_body
from modelserve.loadgen.surfaces import SURFACES


@dataclass(frozen=True)
class MixedLoad:
    """What one phase sends, and where."""

    chat_url: str
    chat_model: str
    embeddings_url: str  # the endpoint's full URL
    embeddings_model: str
    max_tokens: int = 128
    words: int = 8
    warmup: float = 3.0
    seconds: float = 30.0
    client: str = "httpx"
    api_key: str | None = None


@dataclass(frozen=True)
class TimedChat:
    sent: float  # perf_counter when the request went out
    result: RequestResult


@dataclass(frozen=True)
class TimedEmbedding:
    sent: float
    ended: float
    error: str | None


@dataclass
class MixedResult:
    label: str
    phase: str  # "mixed", "chat-alone" or "embeddings-alone"
    chat_streams: int
    embedding_clients: int
    seconds: float  # the measured window
    client: str
    chat_requests: int = 0  # all of the phase's, warm-up and drain included
    chat_errors: int = 0
    chat_tokens: int = 0  # arrived inside the window
    chat_tokens_per_s: float | None = None
    ttft_p50_ms: float | None = None  # waits for a first token that overlap the window
    ttft_p99_ms: float | None = None
    itl_p50_ms: float | None = None  # gaps ending inside the window
    itl_p99_ms: float | None = None
    embedding_requests: int = 0
    embedding_errors: int = 0
    embeddings_per_s: float | None = None  # single-input requests done inside the window
    embedding_p50_ms: float | None = None
    embedding_p99_ms: float | None = None
    error_samples: list[str] = field(default_factory=list)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def token_times(sample: TimedChat) -> list[float]:
    """When each text chunk of a chat request arrived (empty for a failed request)."""
    r = sample.result
    if not r.ok or r.ttft is None:
        return []
    times = [sample.sent + r.ttft]
    for gap in r.gaps:
        times.append(times[-1] + gap)
    return times


def summarise_chat(samples: Sequence[TimedChat], start: float, end: float,
                   row: MixedResult) -> None:
    """Fill in the chat side of `row` from the phase's requests, counting [start, end)."""
    tokens = 0.0
    ttfts: list[float] = []
    gaps: list[float] = []
    for sample in samples:
        times = token_times(sample)
        if not times:
            continue
        # A chunk may carry more than one token: the server's count, spread over its chunks.
        weight = sample.result.tokens / len(times)
        tokens += weight * sum(start <= t < end for t in times)
        # A wait for the first token that overlaps the window happened under its load.
        if sample.sent < end and times[0] >= start and sample.result.ttft is not None:
            ttfts.append(sample.result.ttft)
        gaps += [gap for gap, t in zip(sample.result.gaps, times[1:], strict=True)
                 if start <= t < end]
    row.chat_requests = len(samples)
    row.chat_errors = sum(not s.result.ok for s in samples)
    row.chat_tokens = round(tokens)
    row.chat_tokens_per_s = round(tokens / (end - start), 1)
    row.ttft_p50_ms, row.ttft_p99_ms = _ms(percentile(ttfts, 50)), _ms(percentile(ttfts, 99))
    row.itl_p50_ms, row.itl_p99_ms = _ms(percentile(gaps, 50)), _ms(percentile(gaps, 99))


def summarise_embeddings(samples: Sequence[TimedEmbedding], start: float, end: float,
                         row: MixedResult) -> None:
    """Fill in the embeddings side of `row`: requests that ended inside [start, end)."""
    inside = [s for s in samples if s.error is None and start <= s.ended < end]
    latencies = [s.ended - s.sent for s in inside]
    row.embedding_requests = len(samples)
    row.embedding_errors = sum(s.error is not None for s in samples)
    row.embeddings_per_s = round(len(inside) / (end - start), 1)
    row.embedding_p50_ms = _ms(percentile(latencies, 50))
    row.embedding_p99_ms = _ms(percentile(latencies, 99))


def stagger(max_tokens: int, index: int, streams: int) -> int:
    """The first answer's length for stream `index` of `streams`: 1/N, 2/N, ... of the rest."""
    return max(1, max_tokens * (index + 1) // streams)


async def run_phase(load: MixedLoad, label: str, phase: str, streams: int,
                    clients: int) -> MixedResult:
    chats: list[TimedChat] = []
    embeddings: list[TimedEmbedding] = []
    start = time.perf_counter() + load.warmup
    end = start + load.seconds
    dialect = SURFACES["chat"]

    async def chat_stream(http: Client, index: int) -> None:
        n = 0
        while time.perf_counter() < end:
            topic = TOPICS[(index + n * 7) % len(TOPICS)]
            # ignore_eos: every answer is max_tokens long, on every server (the text workload's).
            # Streams started together would stay in step, every prefill at once: the first
            # answers' lengths are spread instead, so the streams' requests interleave.
            tokens = load.max_tokens if n else stagger(load.max_tokens, index, streams)
            body = {**dialect.body(load.chat_model, f"Write a long story about {topic}.",
                                   tokens), "ignore_eos": True}
            sent = time.perf_counter()
            chats.append(TimedChat(sent, await one_request(http, load.chat_url, dialect, body)))
            n += 1

    async def chat_side() -> None:
        if streams:
            async with open_client(load.client, streams,
                                   auth_headers(dialect, load.api_key)) as http:
                await asyncio.gather(*(chat_stream(http, i) for i in range(streams)))

    async def embeddings_client(index: int) -> None:
        # A connection of its own per client, as `bench embeddings` does; distinct texts.
        headers = {"Authorization": f"Bearer {load.api_key}"} if load.api_key else {}
        async with open_client(load.client, 1, headers) as http:
            n = index
            while time.perf_counter() < end:
                sent = time.perf_counter()
                error = await embed_request(http, load.embeddings_url, embeddings_body(
                    load.embeddings_model, n, 1, load.words), 1)
                embeddings.append(TimedEmbedding(sent, time.perf_counter(), error))
                n += clients

    await asyncio.gather(chat_side(), *(embeddings_client(i) for i in range(clients)))
    row = MixedResult(label, phase, streams, clients, load.seconds, load.client)
    if streams:
        summarise_chat(chats, start, end, row)
    if clients:
        summarise_embeddings(embeddings, start, end, row)
    errors = [s.result.error or "" for s in chats if not s.result.ok]
    errors += [s.error for s in embeddings if s.error is not None]
    row.error_samples = sorted(set(errors))[:3]
    return row


def phases(streams: int, clients: int, alone: bool) -> list[tuple[str, int, int]]:
    """(phase, chat streams, embeddings clients) in the order they run."""
    runs = []
    if alone and streams and clients:
        runs = [("chat-alone", streams, 0), ("embeddings-alone", 0, clients)]
    return [*runs, ("mixed", streams, clients)]


def _vs_alone(row: MixedResult, alone: MixedResult | None, key: str) -> str:
    mixed, base = getattr(row, key), getattr(alone, key, None)
    return f"{mixed / base:.2f}x" if row.phase == "mixed" and mixed is not None and base else "-"


def markdown(rows: Sequence[MixedResult]) -> str:
    """The human table; "vs alone": a mixed row's throughput ÷ its label's alone row's."""
    alone = {(r.label, r.phase): r for r in rows if r.phase != "mixed"}
    lines = ["| server | phase | streams | clients | chat tok/s | vs alone | TTFT p50 / p99 ms "
             "| ITL p50 / p99 ms | emb/s | vs alone | emb p50 / p99 ms | errors chat / emb |",
             "|" + "---|" * 12]
    for r in rows:
        chat, emb = alone.get((r.label, "chat-alone")), alone.get((r.label, "embeddings-alone"))
        lines.append(
            f"| {r.label} | {r.phase} | {r.chat_streams} | {r.embedding_clients} "
            f"| {cell(r.chat_tokens_per_s)} "
            f"| {_vs_alone(r, chat, 'chat_tokens_per_s')} "
            f"| {cell(r.ttft_p50_ms)} / {cell(r.ttft_p99_ms)} "
            f"| {cell(r.itl_p50_ms)} / {cell(r.itl_p99_ms)} | {cell(r.embeddings_per_s)} "
            f"| {_vs_alone(r, emb, 'embeddings_per_s')} "
            f"| {cell(r.embedding_p50_ms)} / {cell(r.embedding_p99_ms)} "
            f"| {r.chat_errors}/{r.chat_requests} / {r.embedding_errors}/{r.embedding_requests} |")
    return "\n".join(lines)


def load_from_args(args: argparse.Namespace) -> MixedLoad:
    chat_url = (args.chat_url or args.url).rstrip("/")
    embeddings_url = (args.embeddings_url or args.url).rstrip("/") + args.embeddings_path
    return MixedLoad(chat_url, args.chat_model, embeddings_url, args.embeddings_model,
                     args.max_tokens, args.words, args.warmup, args.seconds, args.client,
                     args.api_key)


def run_mixed_bench(args: argparse.Namespace) -> None:
    if args.chat_streams < 0 or args.embedding_clients < 0 or \
            not (args.chat_streams or args.embedding_clients):
        sys.exit("modelserve: bench mixed needs --chat-streams or --embedding-clients above 0")
    if args.seconds <= 0 or args.warmup < 0:
        sys.exit("modelserve: --seconds must be above 0 and --warmup at least 0")
    load = load_from_args(args)
    label = args.label or (load.chat_url if not (args.chat_url or args.embeddings_url)
                           else f"{load.chat_url} + {load.embeddings_url}")
    rows = []
    for phase, streams, clients in phases(args.chat_streams, args.embedding_clients,
                                          args.alone):
        rows.append(asyncio.run(run_phase(load, label, phase, streams, clients)))
        line = json.dumps(asdict(rows[-1]))
        print(line, flush=True)
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(line + "\n")
    print(markdown(rows))
