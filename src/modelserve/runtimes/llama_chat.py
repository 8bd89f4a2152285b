"""A chat/completions model on llama.cpp: tokenizer, chat template and batching engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from modelserve.config import LlamaCppOptions, ModelSpec
from modelserve.engine.llm_engine import LLMEngine
from modelserve.engine.model_runner import ModelRunner
from modelserve.engine.sequence import (
    ImageSpan,
    SamplingParams,
    Sequence,
    StepOutput,
    TimingSink,
)
from modelserve.images.decode import DecodedImage
from modelserve.runtimes.chat_template import ChatTemplate
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel
from modelserve.runtimes.mtmd import MtmdProjector, MultimodalPrompt, PromptError

logger = logging.getLogger(__name__)
# llama.cpp logs every tensor at load; keep its warnings and errors only.
logging.getLogger("llama-cpp-python").setLevel(logging.WARNING)


class LlamaChatRuntime:
    def __init__(self, spec: ModelSpec) -> None:
        opts = spec.options_as(LlamaCppOptions)
        path = spec.resolve_source()
        started = time.monotonic()
        self.spec = spec
        self.model = LlamaModel(path, gpu_layers=opts.gpu_layers)
        self.projector: MtmdProjector | None = None
        ctx: LlamaContext | None = None
        try:
            mmproj = opts.resolve_mmproj()
            if mmproj is not None:
                self.projector = MtmdProjector(mmproj, self.model, opts.threads,
                                               use_gpu=opts.gpu_layers != 0)
            ctx = LlamaContext(self.model, n_seq=opts.parallel, ctx_per_seq=opts.context_size,
                               batch_size=opts.batch_size, threads=opts.threads)
            self.engine = LLMEngine(ModelRunner(self.model, ctx), self.model,
                                    max_waiting=opts.max_waiting)
            logger.info("warm-up decode of %s", spec.name)  # the last line if the build faults
            self.engine.start()
        except Exception:
            if ctx is not None:
                ctx.close()
            if self.projector is not None:
                self.projector.close()
            self.model.close()
            raise
        self.ctx = ctx
        bos = self.model.token_text(self.model.bos_token_id) if self.model.bos_token_id >= 0 else ""
        eos = self.model.token_text(self.model.eos_token_id) if self.model.eos_token_id >= 0 else ""
        self._bos_text = bos
        self.template = ChatTemplate(
            opts.chat_template or self.model.chat_template(), bos, eos,
            lambda pairs: self.model.apply_builtin_template("chatml", pairs),
        )
        self.created = int(time.time())
        self.timing: TimingSink | None = None  # set by the server to feed its histograms
        self.memory_bytes = self.model.size_bytes + (
            self.model.kv_bytes_per_token() * opts.parallel * self.ctx.ctx_per_seq)
        logger.info("loaded %s from %s in %.2fs (%d slots x %d tokens)", spec.name, path,
                    time.monotonic() - started, opts.parallel, self.ctx.ctx_per_seq)

    @property
    def context_size(self) -> int:
        return self.ctx.ctx_per_seq

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    @property
    def image_marker(self) -> str | None:
        """What stands for an image in template content; None: a text-only model."""
        return self.projector.marker if self.projector is not None else None

    def close(self) -> None:
        self.engine.stop()
        self.ctx.close()
        if self.projector is not None:
            self.projector.close()
        self.model.close()

    def render_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        """Chat messages -> prompt tokens, through the model's template."""
        text = self.template.render(messages)
        return self.model.tokenize(text, add_special=self._add_bos(text), parse_special=True)

    def render_multimodal(self, messages: list[dict[str, Any]], images: list[DecodedImage]
                          ) -> MultimodalPrompt:
        """Chat messages whose content holds image markers, and their images in order: the
        images are encoded here (blocking, seconds for big projectors: run it in a worker)."""
        assert self.projector is not None
        text = self.template.render(messages)
        prompt = self.projector.prepare(text, images, add_special=self._add_bos(text))
        # An image that attends both ways (Gemma 3) is evaluated in one micro-batch.
        limit = self.ctx.ubatch_size
        big = next((s for s in prompt.images if s.non_causal and s.n_tokens > limit), None)
        if big is not None:
            raise PromptError(f"an image takes {big.n_tokens} tokens in one batch, more than "
                              f"this model's batch_size allows ({limit})")
        return prompt

    def _add_bos(self, text: str) -> bool:
        return self.model.add_bos and not (self._bos_text and text.startswith(self._bos_text))

    def tokenize(self, text: str) -> list[int]:
        """Plain completion prompts: user text, so special-token syntax is not parsed."""
        return self.model.tokenize(text, add_special=True, parse_special=False)

    def token_text(self, token: int) -> str:
        return self.model.token_text(token)

    def detokenize(self, tokens: list[int]) -> str:
        data = b"".join(self.model.token_bytes(t) for t in tokens)
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return self.model.token_bytes(token, special=True)

    def submit(self, prompt: list[int], params: SamplingParams,
               images: list[ImageSpan] | None = None) -> Generation:
        """Queue one sequence (raises QueueFull at capacity); iterate the result for outputs."""
        return Generation(self.engine, prompt, params, images or [], self.timing)


class _LoopDispatcher:
    """Hands engine outputs to one event loop with a single wake-up per engine step.

    Waking the loop once per token of every sequence makes the asyncio thread compete with
    the engine thread for the GIL; batching the hand-off keeps the decode loop fed.
    """

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopDispatcher]] = \
        weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[StepOutput], StepOutput]] = []

    @classmethod
    def for_running_loop(cls) -> _LoopDispatcher:
        loop = asyncio.get_running_loop()
        dispatcher = cls._by_loop.get(loop)
        if dispatcher is None:
            dispatcher = cls._by_loop[loop] = cls(loop)
        return dispatcher

    def send(self, queue: asyncio.Queue[StepOutput], out: StepOutput) -> None:
        """Called from the engine thread."""
        with self._lock:
            self._pending.append((queue, out))
            if len(self._pending) > 1:
                return  # a wake-up is already scheduled
        with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for queue, out in pending:
            queue.put_nowait(out)


class Generation:
    """The asyncio side of one sequence: an async iterator of its outputs, cancellable."""

    def __init__(self, engine: LLMEngine, prompt: list[int], params: SamplingParams,
                 images: list[ImageSpan], timing: TimingSink | None = None) -> None:
        dispatcher = _LoopDispatcher.for_running_loop()
        queue: asyncio.Queue[StepOutput] = asyncio.Queue()
        self._queue = queue
        self._engine = engine
        self._timing = timing
        self._submitted = time.perf_counter()
        self._last_token_at: float | None = None
        self.finished = False
        self._seq = Sequence(prompt=list(prompt), params=params, images=images,
                             sink=lambda out: dispatcher.send(queue, out))
        engine.submit(self._seq)

    def __aiter__(self) -> AsyncIterator[StepOutput]:
        return self._outputs()

    async def _outputs(self) -> AsyncIterator[StepOutput]:
        try:
            while not self.finished:
                out = await self._queue.get()
                self.finished = out.finish_reason is not None
                if self._timing is not None and out.token_ids:
                    self._observe(len(out.token_ids))
                yield out
        finally:
            self.cancel()

    def _observe(self, n_tokens: int) -> None:
        assert self._timing is not None
        now = time.perf_counter()
        if self._last_token_at is None:
            admitted = self._seq.admitted_at or now
            self._timing.queue_wait(max(admitted - self._submitted, 0.0))
            self._timing.first_token(now - self._submitted)
        else:
            self._timing.inter_token((now - self._last_token_at) / n_tokens)
        self._last_token_at = now

    def cancel(self) -> None:
        """Free the sequence's slot at the engine's next step (no-op once finished)."""
        if not self.finished:
            self.finished = True
            self._engine.abort(self._seq.id)
