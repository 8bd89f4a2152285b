"""`modelserve bench cache`: latency of a deterministic chat request answered by the model
(a miss) against the same request answered from the response cache (a hit)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import httpx


def _timed(client: httpx.Client, body: dict[str, object]) -> tuple[float, str]:
    started = time.perf_counter()
    resp = client.post("/v1/chat/completions", json=body)
    resp.raise_for_status()
    return (time.perf_counter() - started) * 1000, resp.headers.get("x-modelserve-cache", "")


def run_cache_bench(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    misses, hits = [], []
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=600) as client:
        for _ in range(args.requests):
            body = {"model": args.model, "temperature": 0, "max_tokens": args.max_tokens,
                    "messages": [{"role": "user", "content":
                                  f"Write a short story about a lighthouse ({uuid.uuid4().hex})."}]}
            miss_ms, first = _timed(client, body)
            hit_ms, second = _timed(client, body)
            if (first, second) != ("miss", "hit"):
                raise SystemExit(f"expected miss then hit, got {first!r} then {second!r}: "
                                 "is the cache enabled on the server?")
            misses.append(miss_ms)
            hits.append(hit_ms)
    miss, hit = statistics.median(misses), statistics.median(hits)
    row = {"requests": args.requests, "max_tokens": args.max_tokens,
           "miss_p50_ms": round(miss, 2), "hit_p50_ms": round(hit, 2),
           "speedup": round(miss / hit, 1)}
    print(json.dumps(row))
