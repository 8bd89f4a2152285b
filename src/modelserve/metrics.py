"""Prometheus metrics: request-level series the server records, plus engine and model state
read at scrape time (no duplicated state). Labels stay bounded: route templates, configured
model names, status codes; never request ids or keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelserve.dependencies import DependencyHealth
from modelserve.kinds import KINDS
from modelserve.registry import ModelRegistry, ModelState
from modelserve.worker.memory import available_bytes

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)
TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


def _family(name: str, metric_type: str, help_text: str,
            labels: tuple[str, ...] = ("model",)) -> GaugeMetricFamily | CounterMetricFamily:
    cls = GaugeMetricFamily if metric_type == "gauge" else CounterMetricFamily
    return cls(name, help_text, labels=list(labels))


class ModelsCollector(Collector):
    """Engine counters and model lifecycle state, read from the registry at scrape time."""

    def __init__(self, models: ModelRegistry) -> None:
        self._models = models

    def collect(self) -> Iterator[Metric]:
        # Every kind's series, with or without samples: the set of names stays the same
        # whichever models are loaded. Kinds may share a series (one family per name).
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for kind in KINDS.values():
            for m in kind.metrics:
                families.setdefault(m.name, _family(m.name, m.type, m.help))
            for model, stats in self._models.stats_of(kind).items():
                for m in kind.metrics:
                    families[m.name].add_metric([model], float(getattr(stats, m.stats_field)))
        yield from families.values()
        yield from self._lifecycle()

    def _lifecycle(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("modelserve_model_state", "1 for the state each model is in",
                                  labels=["model", "state"])
        memory = GaugeMetricFamily("modelserve_model_memory_bytes",
                                   "Memory each loaded model holds: its worker's resident set "
                                   "or its estimate (weights + caches), the larger",
                                   labels=["model"])
        restarts = CounterMetricFamily("modelserve_model_restarts",
                                       "Restart attempts of models whose worker died",
                                       labels=["model"])
        in_flight = GaugeMetricFamily("modelserve_model_requests_in_flight",
                                      "Requests holding each model", labels=["model"])
        loaded = 0
        for name, entry in self._models.entries.items():
            for s in ModelState:
                state.add_metric([name, s.value], 1.0 if entry.state is s else 0.0)
            if entry.current is not None:
                loaded += 1
                memory.add_metric([name], float(entry.current.memory_bytes))
            in_flight.add_metric([name], float(entry.in_flight))
            restarts.add_metric([name], float(entry.restarts))
        count = GaugeMetricFamily("modelserve_loaded_models", "Models loaded now")
        count.add_metric([], float(loaded))
        yield from (state, memory, in_flight, restarts, count)


class ServiceCollector(Collector):
    """Dependency state and the HTTP requests in flight, read at scrape time."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("modelserve_dependency_up",
                               "1 while an external dependency answers, 0 while it is down",
                               labels=["dependency"])
        for name, health in self._metrics.dependencies.items():
            up.add_metric([name], 1.0 if health.up else 0.0)
        in_flight = GaugeMetricFamily("modelserve_http_requests_in_flight",
                                      "HTTP requests being served")
        in_flight.add_metric([], float(self._metrics.in_flight()))
        draining = GaugeMetricFamily("modelserve_draining",
                                     "1 once shutdown has begun (new requests get 503)")
        draining.add_metric([], 1.0 if self._metrics.draining() else 0.0)
        yield from (up, in_flight, draining)
        available = available_bytes()
        if available is not None:
            host = GaugeMetricFamily("modelserve_host_memory_available_bytes",
                                     "The host's MemAvailable: what more models can use")
            host.add_metric([], float(available))
            yield host


@dataclass
class ModelTiming:
    """One model's latency histograms, fed by its generations (a TimingSink)."""

    _queue: Histogram
    _first: Histogram
    _gap: Histogram

    def queue_wait(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def first_token(self, seconds: float) -> None:
        self._first.observe(seconds)

    def inter_token(self, seconds: float) -> None:
        self._gap.observe(seconds)


class ServerMetrics:
    """Series recorded as requests happen; one set per app (its own CollectorRegistry)."""

    def __init__(self, models: ModelRegistry) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ModelsCollector(models))
        self._models = models
        reg = self.registry
        self.requests = Counter("modelserve_requests", "HTTP requests by route, model, status",
                                ["route", "model", "status"], registry=reg)
        self.request_seconds = Histogram(
            "modelserve_request_duration_seconds", "Request latency to the last byte",
            ["route", "model"], buckets=LATENCY_BUCKETS, registry=reg)
        self.queue_wait = Histogram("modelserve_queue_wait_seconds",
                                    "Time from submit to a sequence slot", ["model"],
                                    buckets=LATENCY_BUCKETS, registry=reg)
        self.first_token = Histogram("modelserve_time_to_first_token_seconds",
                                     "Time from submit to the first token", ["model"],
                                     buckets=LATENCY_BUCKETS, registry=reg)
        self.inter_token = Histogram("modelserve_inter_token_latency_seconds",
                                     "Time between tokens of one sequence", ["model"],
                                     buckets=TOKEN_GAP_BUCKETS, registry=reg)
        self.model_load_seconds = Histogram("modelserve_model_load_seconds",
                                            "Time to load a model", ["model"],
                                            buckets=LATENCY_BUCKETS, registry=reg)
        self.cache_lookups = Counter("modelserve_cache_requests",
                                     "Response-cache lookups by result (hit, miss, bypass)",
                                     ["route", "result"], registry=reg)
        self.cache_stores = Counter("modelserve_cache_stores", "Responses stored in the cache",
                                    ["route"], registry=reg)
        # Counted when the work starts, so a test can show a refused or cached request did none.
        self.image_inputs = Counter("modelserve_image_inputs",
                                    "Vision chat images fetched (remote URLs) and encoded "
                                    "(projector), by model and stage", ["model", "stage"],
                                    registry=reg)
        self.rate_limited = Counter("modelserve_rate_limited_requests",
                                    "Requests refused by a per-key limit",
                                    ["limit"], registry=reg)
        self.dependency_errors = Counter(
            "modelserve_dependency_errors", "Failed operations on an external dependency",
            ["dependency"], registry=reg)
        self.unlimited_requests = Counter(
            "modelserve_rate_limit_unenforced_requests",
            "Requests served without their rate limits checked: the limits' storage was "
            "unavailable and the policy is fail_open", registry=reg)
        # Filled by the app: the dependencies (by label) and the shutdown drain, read at
        # scrape time.
        self.dependencies: dict[str, DependencyHealth] = {}
        self.in_flight: Callable[[], int] = lambda: 0
        self.draining: Callable[[], bool] = lambda: False
        self.registry.register(ServiceCollector(self))

    def model_label(self, name: str | None) -> str:
        """Only known model names become label values; anything else is one bucket."""
        if name is None:
            return ""
        return name if name in self._models.entries else "unknown"

    def timing_for(self, model: str) -> ModelTiming:
        return ModelTiming(self.queue_wait.labels(model), self.first_token.labels(model),
                           self.inter_token.labels(model))
