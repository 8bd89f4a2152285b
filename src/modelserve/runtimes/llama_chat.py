"""A chat/completions model on llama.cpp: tokenizer, chat template and batching engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
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
from modelserve.runtimes.chat_vocab import ChatVocabulary
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel
from modelserve.runtimes.mtmd import MtmdProjector, MultimodalPrompt, PromptError

logger = logging.getLogger(__name__)
# llama.cpp logs every tensor at load; keep its warnings and errors only.
logging.getLogger("llama-cpp-python").setLevel(logging.WARNING)


class LlamaChatRuntime(ChatVocabulary):
    def __init__(self, spec: ModelSpec) -> None:
        opts = spec.options_as(LlamaCppOptions)
        path = spec.resolve_source()
        started = time.monotonic()
        self.spec = spec
        self.options = opts
        model = LlamaModel(path, gpu_layers=opts.gpu_layers)
        self.projector: MtmdProjector | None = None
        ctx: LlamaContext | None = None
        try:
            mmproj = opts.resolve_mmproj()
            if mmproj is not None:
                self.projector = MtmdProjector(mmproj, model, opts.threads,
                                               use_gpu=opts.gpu_layers != 0)
            ctx = LlamaContext(model, n_seq=opts.parallel, ctx_per_seq=opts.context_size,
                               batch_size=opts.batch_size, threads=opts.threads)
            self.engine = LLMEngine(ModelRunner(model, ctx), model,
                                    max_waiting=opts.max_waiting)
            logger.info("warm-up decode of %s", spec.name)  # the last line if the build faults
            self.engine.start()
        except Exception:
            if ctx is not None:
                ctx.close()
            if self.projector is not None:
                self.projector.close()
            model.close()
            raise
        self.ctx = ctx
        self._init_text(model, opts)
        self.created = int(time.time())
        self.timing: TimingSink | None = None  # set by the server to feed its histograms
        self.memory_bytes = model.size_bytes + (
            model.kv_bytes_per_token() * opts.parallel * self.ctx.ctx_per_seq)
        logger.info("loaded %s from %s in %.2fs (%d slots x %d tokens)", spec.name, path,
                    time.monotonic() - started, opts.parallel, self.ctx.ctx_per_seq)

    @property
    def context_size(self) -> int:
        return self.ctx.ctx_per_seq

    @property
    def image_marker(self) -> str | None:
        """What stands for an image in template content; None: a text-only model."""
        return self.projector.marker if self.projector is not None else None

    def describe(self) -> dict[str, Any]:
        """What the API process's front end needs to know (see worker/chat_front.py)."""
        return {"context_size": self.context_size, "image_marker": self.image_marker,
                "capacity": self.options.parallel + self.options.max_waiting,
                "memory_bytes": self.memory_bytes, "created": self.created}

    def close(self) -> None:
        self.engine.stop()
        self.ctx.close()
        if self.projector is not None:
            self.projector.close()
        self.model.close()

    def render_multimodal(self, messages: list[dict[str, Any]], images: list[DecodedImage],
                          tools: list[dict[str, Any]] | None = None,
                          variables: dict[str, Any] | None = None) -> MultimodalPrompt:
        """Chat messages whose content holds image markers, and their images in order: the
        images are encoded here (blocking, seconds for big projectors: run it in a worker)."""
        assert self.projector is not None
        text = self.template.render(messages, tools=tools, variables=variables)
        prompt = self.projector.prepare(text, images, add_special=self._add_bos(text))
        # An image that attends both ways (Gemma 3) is evaluated in one micro-batch.
        limit = self.ctx.ubatch_size
        big = next((s for s in prompt.images if s.non_causal and s.n_tokens > limit), None)
        if big is not None:
            raise PromptError(f"an image takes {big.n_tokens} tokens in one batch, more than "
                              f"this model's batch_size allows ({limit})")
        return prompt

    def start_sequence(self, prompt: list[int], params: SamplingParams,
                       images: list[ImageSpan], sink: Callable[[StepOutput], None]) -> int:
        """Queue one sequence whose outputs go to `sink` on the engine thread (raises
        QueueFull at capacity); returns its id for `abort`."""
        seq = Sequence(prompt=list(prompt), params=params, images=images, sink=sink)
        self.engine.submit(seq)
        return seq.id

    def abort(self, seq_id: int) -> None:
        self.engine.abort(seq_id)

    def submit(self, prompt: list[int], params: SamplingParams,
               images: list[ImageSpan] | None = None) -> Generation:
        """Queue one sequence (raises QueueFull at capacity); iterate the result for outputs."""
        dispatcher = _LoopDispatcher.for_running_loop()
        gen = Generation(self.timing)
        seq_id = self.start_sequence(prompt, params, images or [],
                                     lambda out: dispatcher.send(gen.queue, out))
        gen.on_cancel = lambda: self.engine.abort(seq_id)
        return gen


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
    """The asyncio side of one sequence (in this process or a worker's): an async iterator
    of its outputs, cancellable."""

    def __init__(self, timing: TimingSink | None = None) -> None:
        self.queue: asyncio.Queue[StepOutput] = asyncio.Queue()
        self.on_cancel: Callable[[], None] = lambda: None
        self._timing = timing
        self._submitted = time.perf_counter()
        self._last_token_at: float | None = None
        self.finished = False

    def __aiter__(self) -> AsyncIterator[StepOutput]:
        return self._outputs()

    async def _outputs(self) -> AsyncIterator[StepOutput]:
        try:
            while not self.finished:
                out = await self.queue.get()
                self.finished = out.finish_reason is not None
                if self._timing is not None and out.token_ids:
                    self._observe(out)
                yield out
        finally:
            self.cancel()

    def _observe(self, out: StepOutput) -> None:
        assert self._timing is not None
        now = time.perf_counter()
        if self._last_token_at is None:
            if out.queue_seconds is not None:
                self._timing.queue_wait(out.queue_seconds)
            self._timing.first_token(now - self._submitted)
        else:
            self._timing.inter_token((now - self._last_token_at) / len(out.token_ids))
        self._last_token_at = now

    def cancel(self) -> None:
        """Free the sequence's slot at the engine's next step (no-op once finished)."""
        if not self.finished:
            self.finished = True
            self.on_cancel()
