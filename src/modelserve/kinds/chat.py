"""The chat kind: GGUF models on llama.cpp, serving chat, completions and tokenize."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.config import LlamaCppOptions
from modelserve.kinds.base import MetricDef, ModelKind

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec
    from modelserve.engine.llm_engine import EngineStats
    from modelserve.metrics import ServerMetrics
    from modelserve.runtimes.llama_chat import LlamaChatRuntime
    from modelserve.worker.handle import WorkerHandle


def _build(spec: ModelSpec) -> LlamaChatRuntime:
    from modelserve.runtimes.llama_chat import LlamaChatRuntime

    return LlamaChatRuntime(spec)


def _describe(runtime: LlamaChatRuntime) -> dict[str, Any]:
    return runtime.describe()


def _front(spec: ModelSpec, worker: WorkerHandle, info: dict[str, Any]) -> LlamaChatRuntime:
    from modelserve.worker.chat_front import ChatFront

    # The front end offers the routes this runtime's methods (typed as the runtime).
    return ChatFront(spec, worker, info)  # type: ignore[return-value]


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import chat, completions, tokenize

    return (chat.router, completions.router, tokenize.router)


def _stats(runtime: LlamaChatRuntime) -> EngineStats:
    return runtime.engine.snapshot()


def _on_loaded(runtime: LlamaChatRuntime, metrics: ServerMetrics, name: str) -> None:
    # The engine records queue wait and token latencies into this model's histograms.
    runtime.timing = metrics.timing_for(name)


def _extra_sources(spec: ModelSpec) -> list[tuple[str, object]]:
    return [("options.mmproj", spec.options_as(LlamaCppOptions).mmproj)]


CHAT: ModelKind[LlamaChatRuntime] = ModelKind(
    name="chat",
    runtimes={"llama.cpp": LlamaCppOptions},
    default_runtime="llama.cpp",
    build=_build,
    describe=_describe,
    front=_front,
    routers=_routers,
    metrics=(
        MetricDef("modelserve_running_sequences", "gauge", "Sequences holding a slot",
                  "running"),
        MetricDef("modelserve_waiting_sequences", "gauge", "Sequences queued for a slot",
                  "waiting"),
        MetricDef("modelserve_prompt_tokens", "counter", "Prompt tokens admitted",
                  "prompt_tokens"),
        MetricDef("modelserve_prompt_tokens_reused", "counter",
                  "Prompt tokens served from a cached prefix", "reused_prompt_tokens"),
        MetricDef("modelserve_completion_tokens", "counter", "Tokens generated",
                  "completion_tokens"),
        MetricDef("modelserve_cancelled_sequences", "counter",
                  "Sequences cancelled (client gone)", "cancelled"),
        MetricDef("modelserve_engine_steps", "counter", "Batched llama_decode calls", "steps"),
        MetricDef("modelserve_engine_decode_seconds", "counter", "Time inside llama_decode",
                  "decode_seconds"),
        MetricDef("modelserve_engine_step_seconds", "counter",
                  "Time in engine steps (decode, sampling, hand-off)", "step_seconds"),
        MetricDef("modelserve_kv_cache_used_tokens", "gauge",
                  "KV cells holding running sequences or reusable prefixes", "kv_used_tokens"),
        MetricDef("modelserve_kv_cache_capacity_tokens", "gauge", "KV cells in all slots",
                  "kv_capacity_tokens"),
    ),
    stats=_stats,
    use="chat or completions",
    on_loaded=_on_loaded,
    extra_sources=_extra_sources,
)
