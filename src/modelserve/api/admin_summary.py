"""GET /admin/summary: the server's own Prometheus registry as plain JSON, for the console.

Counters and gauges are summed over their labels (and also given per model where they have
a `model` label); histograms come as their cumulative buckets plus p50/p99 estimated from
them. Everything is cumulative since start: a client computes rates (and windowed
quantiles, from bucket differences) between two polls.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry

router = APIRouter()

# Routes that are not model traffic (the console's own polling among them): left out of
# the `api_requests` total a request-rate chart wants.
OWN_ROUTES = ("/admin", "/ui", "/metrics", "/health", "/ready")

Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), by bound


def quantile(buckets: Buckets, q: float) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket the rank falls in; the
    largest finite bound when it falls in +Inf; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def summarize(registry: CollectorRegistry) -> dict[str, Any]:
    totals: dict[str, float] = defaultdict(float)
    by_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_label: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    hist_buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    hist_sums: dict[str, float] = defaultdict(float)
    for family in registry.collect():
        if family.type == "histogram":
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    hist_buckets[family.name][float(s.labels["le"])] += s.value
                elif s.name.endswith("_sum"):
                    hist_sums[family.name] += s.value
            continue
        if family.type not in ("counter", "gauge"):
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            totals[family.name] += s.value
            if family.name == "modelserve_requests" \
                    and not s.labels.get("route", "").startswith(OWN_ROUTES):
                totals["api_requests"] += s.value
            if "model" in s.labels:
                by_model[s.labels["model"]][family.name] += s.value
            # A second breakdown for the series whose other label says what happened.
            for label in ("status", "result", "limit", "state"):
                if label in s.labels and s.value:
                    by_label[family.name][s.labels[label]] += s.value
    histograms: dict[str, Any] = {}
    for name, raw in hist_buckets.items():
        buckets = sorted(raw.items())
        histograms[name] = {"count": buckets[-1][1] if buckets else 0.0,
                            "sum": hist_sums[name],
                            "buckets": [[_bound(b), c] for b, c in buckets],
                            "p50": quantile(buckets, 0.5), "p99": quantile(buckets, 0.99)}
    return {"time": time.time(), "totals": dict(totals),
            "by_model": {m: dict(v) for m, v in by_model.items()},
            "by_label": {n: dict(v) for n, v in by_label.items()},
            "histograms": histograms}


def _bound(bound: float) -> float | str:
    return "+Inf" if math.isinf(bound) else bound  # JSON has no infinity


@router.get("/admin/summary")
async def summary(request: Request) -> dict[str, Any]:
    """Counters, gauges and histograms of /admin/metrics as JSON (admin scope with keys)."""
    await request.app.state.registry.refresh_stats()
    return summarize(request.app.state.metrics.registry)
