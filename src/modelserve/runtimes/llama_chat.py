"""A chat/completions model on llama.cpp: tokenizer, chat template and batching engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from modelserve.config import ModelSpec
from modelserve.engine.llm_engine import EngineStats, LLMEngine
from modelserve.engine.sequence import SamplingParams, Sequence, StepOutput
from modelserve.runtimes.chat_template import ChatTemplate
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel

logger = logging.getLogger(__name__)
# llama.cpp logs every tensor at load; keep its warnings and errors only.
logging.getLogger("llama-cpp-python").setLevel(logging.WARNING)


class LlamaChatRuntime:
    kind = "chat"

    def __init__(self, spec: ModelSpec) -> None:
        opts = spec.options
        path = spec.resolve_source()
        started = time.monotonic()
        self.spec = spec
        self.model = LlamaModel(path, gpu_layers=opts.gpu_layers)
        try:
            self.ctx = LlamaContext(self.model, n_seq=opts.parallel, ctx_per_seq=opts.context_size,
                                    batch_size=opts.batch_size, threads=opts.threads)
        except Exception:
            self.model.close()
            raise
        self.engine = LLMEngine(self.model, self.ctx, max_waiting=opts.max_waiting)
        bos = self.model.token_text(self.model.bos_token_id) if self.model.bos_token_id >= 0 else ""
        eos = self.model.token_text(self.model.eos_token_id) if self.model.eos_token_id >= 0 else ""
        self._bos_text = bos
        self.template = ChatTemplate(
            opts.chat_template or self.model.chat_template(), bos, eos,
            lambda pairs: self.model.apply_builtin_template("chatml", pairs),
        )
        self.engine.start()
        self.created = int(time.time())
        logger.info("loaded %s from %s in %.2fs (%d slots x %d tokens)", spec.name, path,
                    time.monotonic() - started, opts.parallel, self.ctx.ctx_per_seq)

    @property
    def context_size(self) -> int:
        return self.ctx.ctx_per_seq

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    @property
    def stats(self) -> EngineStats:
        return self.engine.stats

    def close(self) -> None:
        self.engine.stop()
        self.ctx.close()
        self.model.close()

    def render_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        """Chat messages -> prompt tokens, through the model's template."""
        text = self.template.render(messages)
        add_bos = self.model.add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self.model.tokenize(text, add_special=add_bos, parse_special=True)

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

    def submit(self, prompt: list[int], params: SamplingParams) -> Generation:
        """Queue one sequence (raises QueueFull at capacity); iterate the result for outputs."""
        return Generation(self.engine, prompt, params)


class Generation:
    """The asyncio side of one sequence: an async iterator of its outputs, cancellable."""

    def __init__(self, engine: LLMEngine, prompt: list[int], params: SamplingParams) -> None:
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[StepOutput] = asyncio.Queue()
        self._engine = engine
        self.finished = False

        def sink(out: StepOutput) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                loop.call_soon_threadsafe(self._queue.put_nowait, out)

        self._seq = Sequence(prompt=list(prompt), params=params, sink=sink)
        engine.submit(self._seq)

    def __aiter__(self) -> AsyncIterator[StepOutput]:
        return self._outputs()

    async def _outputs(self) -> AsyncIterator[StepOutput]:
        try:
            while not self.finished:
                out = await self._queue.get()
                self.finished = out.finish_reason is not None
                yield out
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Free the sequence's slot at the engine's next step (no-op once finished)."""
        if not self.finished:
            self.finished = True
            self._engine.abort(self._seq.id)
