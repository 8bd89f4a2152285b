"""A chat model as the API process holds it while the model runs in its worker process.

Tokenizing, the chat template and token pieces run here, over a vocabulary-only load of the
same GGUF (no weights, no compute kernels); generation and image encoding go to the worker.
"""

from __future__ import annotations

from typing import Any

from modelserve.config import LlamaCppOptions, ModelSpec
from modelserve.engine.scheduler import QueueFull
from modelserve.engine.sequence import ImageSpan, SamplingParams, StepOutput, TimingSink
from modelserve.images.decode import DecodedImage
from modelserve.runtimes.chat_vocab import ChatVocabulary
from modelserve.runtimes.llama_chat import Generation
from modelserve.runtimes.llama_cpp import LlamaModel
from modelserve.runtimes.mtmd import MultimodalPrompt
from modelserve.worker.handle import WorkerHandle


class ChatFront(ChatVocabulary):
    def __init__(self, spec: ModelSpec, worker: WorkerHandle, info: dict[str, Any]) -> None:
        opts = spec.options_as(LlamaCppOptions)
        self.spec = spec
        self.worker = worker
        self._init_text(LlamaModel(spec.resolve_source(), vocab_only=True), opts,
                        announce=False)
        self.context_size: int = info["context_size"]
        self.image_marker: str | None = info["image_marker"]
        self.memory_bytes: int = info["memory_bytes"]
        self.created: int = info["created"]
        # The worker's engine queues at most this many sequences (slots + max_waiting): every
        # sequence passes through here, so counting them here refuses exactly as it would.
        self._capacity: int = info["capacity"]
        self._in_flight = 0
        self.timing: TimingSink | None = None

    def close(self) -> None:
        self.worker.stop()
        self.model.close()

    def render_multimodal(self, messages: list[dict[str, Any]], images: list[DecodedImage],
                          tools: list[dict[str, Any]] | None = None,
                          variables: dict[str, Any] | None = None) -> MultimodalPrompt:
        """Encodes the images in the worker (blocking: call it from a thread)."""
        prompt: MultimodalPrompt = self.worker.call_blocking("render_multimodal", messages,
                                                             images, tools, variables)
        return prompt

    def submit(self, prompt: list[int], params: SamplingParams,
               images: list[ImageSpan] | None = None) -> Generation:
        if self._in_flight >= self._capacity:
            raise QueueFull()
        gen = Generation(self.timing)

        def sink(out: StepOutput) -> None:
            if out.finish_reason is not None:
                self._in_flight -= 1
            gen.queue.put_nowait(out)

        stream_id = self.worker.open_stream(prompt, params, images or [], sink)
        self._in_flight += 1
        gen.on_cancel = lambda: self.worker.abort(stream_id)
        return gen
