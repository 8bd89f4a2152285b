"""Prometheus metrics, read from the engines at scrape time (no duplicated state)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelserve.registry import ModelRegistry
from modelserve.runtimes.diffusion import DiffusionRuntime
from modelserve.runtimes.embeddings import EmbeddingRuntime

# (metric name, kind, help, stats field) for chat engines (EngineStats) ...
CHAT_METRICS = [
    ("modelserve_running_sequences", "gauge", "Sequences holding a slot", "running"),
    ("modelserve_waiting_sequences", "gauge", "Sequences queued for a slot", "waiting"),
    ("modelserve_prompt_tokens", "counter", "Prompt tokens admitted", "prompt_tokens"),
    ("modelserve_prompt_tokens_reused", "counter", "Prompt tokens served from a cached prefix",
     "reused_prompt_tokens"),
    ("modelserve_completion_tokens", "counter", "Tokens generated", "completion_tokens"),
    ("modelserve_cancelled_sequences", "counter", "Sequences cancelled (client gone)",
     "cancelled"),
    ("modelserve_engine_steps", "counter", "Batched llama_decode calls", "steps"),
    ("modelserve_engine_decode_seconds", "counter", "Time inside llama_decode",
     "decode_seconds"),
    ("modelserve_engine_step_seconds", "counter",
     "Time in engine steps (decode, sampling, hand-off)", "step_seconds"),
]
# ... and for embeddings batchers (BatchStats).
EMBEDDING_METRICS = [
    ("modelserve_embedding_batches", "counter", "Embedding forward passes", "batches"),
    ("modelserve_embedding_batch_inputs", "counter", "Inputs embedded (in batches)", "inputs"),
    ("modelserve_embedding_max_batch_size", "gauge", "Largest embedding batch so far",
     "max_batch_size"),
]

# ... and for diffusers image models (DiffusionStats).
IMAGE_METRICS = [
    ("modelserve_image_generations", "counter", "Image requests completed", "generations"),
    ("modelserve_image_images", "counter", "Images generated", "images"),
    ("modelserve_image_steps", "counter", "Denoising steps run (cancelled work included)",
     "steps"),
    ("modelserve_image_cancelled", "counter", "Image requests cancelled (client gone)",
     "cancelled"),
    ("modelserve_image_failed", "counter", "Image requests that failed", "failed"),
    ("modelserve_image_waiting", "gauge", "Image requests queued", "waiting"),
    ("modelserve_image_running", "gauge", "Image requests running", "running"),
    ("modelserve_image_seconds", "counter", "Time inside diffusers pipeline calls", "seconds"),
]


def _family(name: str, kind: str, help_text: str) -> GaugeMetricFamily | CounterMetricFamily:
    cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
    return cls(name, help_text, labels=["model"])


class EngineCollector(Collector):
    def __init__(self, models: ModelRegistry) -> None:
        self._models = models

    def collect(self) -> Iterator[Metric]:
        families = {name: _family(name, kind, text)
                    for name, kind, text, _ in CHAT_METRICS + EMBEDDING_METRICS + IMAGE_METRICS}
        for model, runtime in self._models.loaded().items():
            stats: object
            if isinstance(runtime, EmbeddingRuntime):
                table, stats = EMBEDDING_METRICS, runtime.batcher.stats
            elif isinstance(runtime, DiffusionRuntime):
                table, stats = IMAGE_METRICS, runtime.snapshot()
            else:
                table, stats = CHAT_METRICS, runtime.engine.snapshot()
            for name, _, _, field in table:
                families[name].add_metric([model], float(getattr(stats, field)))
        yield from families.values()


def build_registry(models: ModelRegistry) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(models))
    return registry
