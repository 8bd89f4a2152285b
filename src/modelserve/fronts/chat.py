"""A chat model as the API process holds it while the model runs in its worker.

Tokenizing, the chat template and token pieces run here, over a vocabulary-only load of the
same GGUF (no weights, no compute kernels); generation and image encoding go to the worker,
which keeps the images' embeddings (they never come back over the pipe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.engine.generation import Generation
from modelserve.engine.sequence import (
    ImageSpan,
    MultimodalPrompt,
    SamplingParams,
    StepOutput,
    TimingSink,
)
from modelserve.failures import BUSY, UNAVAILABLE, QueueFull, StateLost, WorkerDied
from modelserve.images.decode import DecodedImage
from modelserve.kinds.chat import ChatModel
from modelserve.kinds.options import LlamaCppOptions
from modelserve.kinds.wiring import KindServing, ServerHooks
from modelserve.runtimes.chat_vocab import ChatVocabulary
from modelserve.runtimes.llama_cpp import LlamaModel
from modelserve.worker.protocol import End
from modelserve.worker.transport import Worker

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec


class ChatFront(ChatVocabulary):
    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        opts = spec.options_as(LlamaCppOptions)
        self.spec = spec
        self.worker = worker
        self._init_text(LlamaModel(spec.resolve_source(), vocab_only=True), opts,
                        announce=False)
        self.context_size: int = info["context_size"]
        self.image_marker: str | None = info["image_marker"]
        self.created: int = info["created"]
        # The worker's engine queues at most this many sequences (slots + max_waiting): every
        # sequence passes through here, so counting them here refuses exactly as it would.
        self._capacity: int = info["capacity"]
        self._in_flight = 0
        self.timing: TimingSink | None = None
        self.cache_scope: str = opts.prompt_cache_scope

    def card(self) -> dict[str, Any]:
        # How the model is told about tools: its own template, or a system prompt.
        return {"tools": "template" if self.template.supports_tools else "system_prompt"}

    def has_token(self, text: str) -> bool:
        return self.model.has_token(text)

    def close(self) -> None:
        self.model.close()

    async def render_multimodal(self, messages: list[dict[str, Any]],
                                images: list[DecodedImage],
                                tools: list[dict[str, Any]] | None = None,
                                variables: dict[str, Any] | None = None) -> MultimodalPrompt:
        prompt: MultimodalPrompt = await self.worker.acall("render_multimodal", messages,
                                                           images, tools, variables)
        return prompt

    def submit(self, prompt: list[int], params: SamplingParams,
               images: list[ImageSpan] | None = None) -> Generation:
        if self._in_flight >= self._capacity:
            raise QueueFull()
        gen = Generation(self.timing)
        finished = False

        def sink(item: StepOutput | End) -> None:
            nonlocal finished
            if not isinstance(item, End):
                finished = item.finish_reason is not None
                gen.queue.put_nowait(item)
                return
            self._in_flight -= 1
            if not finished:  # refused at the start, or its worker died: an error output
                gen.queue.put_nowait(_failure(item.error))

        stream_id = self.worker.open("generate", prompt, params, images or [], sink=sink)
        self._in_flight += 1
        gen.on_cancel = lambda: self.worker.cancel(stream_id)
        return gen


def _failure(error: BaseException | None) -> StepOutput:
    code = UNAVAILABLE if isinstance(error, WorkerDied | StateLost) else \
        BUSY if isinstance(error, QueueFull) else None
    return StepOutput(finish_reason="error", error=str(error or "the stream ended early"),
                      error_code=code)


def estimate(spec: ModelSpec) -> int:
    """Weights (and projector) plus a full KV cache: what the worker will hold, known from
    the GGUF's metadata before it loads (a vocabulary-only read)."""
    from modelserve.model_files import disk_bytes

    opts = spec.options_as(LlamaCppOptions)
    path = spec.resolve_source()
    vocab = LlamaModel(path, vocab_only=True)
    try:
        kv_per_token = vocab.kv_bytes_per_token() or 0
    finally:
        vocab.close()
    mmproj = opts.resolve_mmproj()
    projector = disk_bytes(mmproj) if mmproj is not None else 0
    return disk_bytes(path) + projector + kv_per_token * opts.parallel * opts.context_size


def _routers() -> Sequence[APIRouter]:
    from modelserve.api import chat, completions, tokenize
    from modelserve.api.anthropic import messages
    from modelserve.api.ollama import chat as ollama
    from modelserve.api.responses import routes as responses

    return (chat.router, completions.router, tokenize.router, messages.router,
            responses.router, ollama.router)


def _on_loaded(front: ChatModel, server: ServerHooks, name: str) -> None:
    # The generations record queue wait and token latencies into this model's histograms.
    front.timing = server.timing_for(name)


CHAT_SERVING: KindServing[ChatModel] = KindServing(
    front=ChatFront, routers=_routers, estimate=estimate, on_loaded=_on_loaded)
