"""GET /admin/summary's pure part: a Prometheus registry as JSON, quantiles from buckets."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelserve.api.admin_summary import quantile, summarize


def test_quantile_interpolates_within_the_bucket_as_prometheus_does() -> None:
    buckets = [(0.1, 0.0), (0.5, 50.0), (1.0, 100.0), (math.inf, 100.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.5)
    assert quantile(buckets, 0.25) == pytest.approx(0.3)
    assert quantile(buckets, 0.99) == pytest.approx(0.99)
    assert quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    assert quantile([], 0.5) is None
    # Past the last finite bound: that bound, as histogram_quantile answers.
    assert quantile([(1.0, 1.0), (math.inf, 10.0)], 0.99) == 1.0


def test_summarize_sums_labels_and_keeps_per_model_and_outcome_breakdowns() -> None:
    registry = CollectorRegistry()
    requests = Counter("modelserve_requests", "r", ["route", "model", "status"],
                       registry=registry)
    requests.labels("/v1/chat/completions", "a", "200").inc(3)
    requests.labels("/v1/embeddings", "b", "429").inc()
    requests.labels("/admin/summary", "", "200").inc(5)  # the console's own polls
    Gauge("modelserve_waiting_sequences", "w", ["model"], registry=registry).labels("a").set(2)
    ttft = Histogram("modelserve_time_to_first_token_seconds", "t", ["model"],
                     buckets=(0.1, 1.0), registry=registry)
    for seconds in (0.05, 0.5, 0.5, 2.0):
        ttft.labels("a").observe(seconds)

    out = summarize(registry)
    assert out["totals"]["modelserve_requests"] == 9
    assert out["totals"]["api_requests"] == 4
    assert out["by_model"]["a"] == {"modelserve_requests": 3, "modelserve_waiting_sequences": 2}
    assert out["by_label"]["modelserve_requests"] == {"200": 8, "429": 1}
    hist = out["histograms"]["modelserve_time_to_first_token_seconds"]
    assert hist["count"] == 4 and hist["sum"] == pytest.approx(3.05)
    assert hist["buckets"] == [[0.1, 1.0], [1.0, 3.0], ["+Inf", 4.0]]
    assert hist["p50"] == pytest.approx(0.1 + 0.9 * (2 - 1) / 2)
    assert hist["p99"] == 1.0
