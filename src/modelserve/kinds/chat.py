"""The chat kind: GGUF models on llama.cpp, serving chat, completions and tokenize."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modelserve.kinds.base import MetricDef, ModelKind
from modelserve.kinds.options import LlamaCppOptions

if TYPE_CHECKING:  # leaf modules, imported for the types only: config parsing stays light
    from modelserve.engine.generation import Generation
    from modelserve.engine.sequence import (
        ImageSpan,
        MultimodalPrompt,
        SamplingParams,
        TimingSink,
    )
    from modelserve.images.decode import DecodedImage
    from modelserve.runtimes.chat_template import ChatTemplate


class ChatModel(Protocol):
    """What the chat, completions and tokenize routes hold of a chat model (fronts/chat.py):
    tokenizer and template here, generation in its worker."""

    created: int
    context_size: int
    image_marker: str | None  # what stands for an image in message content; None: text only
    template: ChatTemplate
    timing: TimingSink | None
    cache_scope: str  # prompt KV reuse: "shared", or "per_key" (chat/cache_scope.py)

    @property
    def n_vocab(self) -> int: ...

    def card(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def has_token(self, text: str) -> bool: ...

    def tokenize(self, text: str, special: bool = False, add_special: bool = True
                 ) -> list[int]: ...

    def render_chat(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None,
                    variables: dict[str, Any] | None = None) -> list[int]: ...

    def token_text(self, token: int) -> str: ...

    def token_bytes(self, token: int) -> bytes: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    async def render_multimodal(self, messages: list[dict[str, Any]],
                                images: list[DecodedImage],
                                tools: list[dict[str, Any]] | None = None,
                                variables: dict[str, Any] | None = None) -> MultimodalPrompt:
        """Render and encode the images (in the worker, which keeps their embeddings)."""

    def submit(self, prompt: list[int], params: SamplingParams,
               images: list[ImageSpan] | None = None) -> Generation:
        """Start one sequence (raises QueueFull at capacity)."""


def _extra_sources(options: LlamaCppOptions) -> list[tuple[str, object]]:
    return [("options.mmproj", options.mmproj), ("options.draft_model", options.draft_model)]


CHAT: ModelKind[ChatModel] = ModelKind(
    name="chat",
    runtimes={"llama.cpp": LlamaCppOptions},
    default_runtime="llama.cpp",
    use="chat or completions",
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
        MetricDef("modelserve_draft_tokens", "counter",
                  "Drafted tokens verified by speculative decoding", "draft_tokens"),
        MetricDef("modelserve_draft_tokens_accepted", "counter",
                  "Drafted tokens the model agreed with", "accepted_draft_tokens"),
        MetricDef("modelserve_prompt_store_entries", "gauge",
                  "Prompt prefixes kept in host memory", "stored_prompts"),
        MetricDef("modelserve_prompt_store_bytes", "gauge",
                  "Host memory holding saved prompt KV", "stored_prompt_bytes"),
        MetricDef("modelserve_prompt_store_saves", "counter",
                  "Slot prefixes saved to host memory before being overwritten",
                  "stored_prompt_saves"),
        MetricDef("modelserve_prompt_store_hits", "counter",
                  "Prompts that restored a saved prefix", "stored_prompt_hits"),
        MetricDef("modelserve_prompt_store_restored_tokens", "counter",
                  "Prompt tokens restored from host memory instead of computed",
                  "stored_prompt_restored_tokens"),
        MetricDef("modelserve_prompt_store_evictions", "counter",
                  "Saved prefixes dropped to stay within host_cache_mb",
                  "stored_prompt_evictions"),
    ),
    runtime="modelserve.runtimes.llama_chat:CHAT_RUNTIME",
    serving="modelserve.fronts.chat:CHAT_SERVING",
    extra_sources=_extra_sources,
    cpu_weight=2.0,  # decoding keeps every core busy for as long as streams run
)
