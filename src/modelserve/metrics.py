"""Prometheus metrics, read from the engines at scrape time (no duplicated state)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelserve.registry import ModelRegistry
from modelserve.runtimes.embeddings import EmbeddingRuntime


class EngineCollector(Collector):
    def __init__(self, models: ModelRegistry) -> None:
        self._models = models

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("modelserve_running_sequences",
                                    "Sequences holding a slot", labels=["model"])
        waiting = GaugeMetricFamily("modelserve_waiting_sequences",
                                    "Sequences queued for a slot", labels=["model"])
        prompt = CounterMetricFamily("modelserve_prompt_tokens",
                                     "Prompt tokens admitted", labels=["model"])
        reused = CounterMetricFamily("modelserve_prompt_tokens_reused",
                                     "Prompt tokens served from a cached prefix", labels=["model"])
        completion = CounterMetricFamily("modelserve_completion_tokens",
                                         "Tokens generated", labels=["model"])
        cancelled = CounterMetricFamily("modelserve_cancelled_sequences",
                                        "Sequences cancelled (client gone)", labels=["model"])
        steps = CounterMetricFamily("modelserve_engine_steps",
                                    "Batched llama_decode calls", labels=["model"])
        decode = CounterMetricFamily("modelserve_engine_decode_seconds",
                                     "Time inside llama_decode", labels=["model"])
        step_time = CounterMetricFamily("modelserve_engine_step_seconds",
                                        "Time in engine steps (decode, sampling, hand-off)",
                                        labels=["model"])
        batches = CounterMetricFamily("modelserve_embedding_batches",
                                      "Embedding forward passes", labels=["model"])
        batch_inputs = CounterMetricFamily("modelserve_embedding_batch_inputs",
                                           "Inputs embedded (in batches)", labels=["model"])
        max_batch = GaugeMetricFamily("modelserve_embedding_max_batch_size",
                                      "Largest embedding batch so far", labels=["model"])
        for name, runtime in self._models.loaded().items():
            if isinstance(runtime, EmbeddingRuntime):
                bstats = runtime.batcher.stats
                batches.add_metric([name], bstats.batches)
                batch_inputs.add_metric([name], bstats.inputs)
                max_batch.add_metric([name], bstats.max_batch_size)
                continue
            stats = runtime.engine.snapshot()
            running.add_metric([name], stats.running)
            waiting.add_metric([name], stats.waiting)
            prompt.add_metric([name], stats.prompt_tokens)
            reused.add_metric([name], stats.reused_prompt_tokens)
            completion.add_metric([name], stats.completion_tokens)
            cancelled.add_metric([name], stats.cancelled)
            steps.add_metric([name], stats.steps)
            decode.add_metric([name], stats.decode_seconds)
            step_time.add_metric([name], stats.step_seconds)
        yield from (running, waiting, prompt, reused, completion, cancelled, steps, decode,
                    step_time, batches,
                    batch_inputs, max_batch)


def build_registry(models: ModelRegistry) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(models))
    return registry
