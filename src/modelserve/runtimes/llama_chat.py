"""A chat/completions model on llama.cpp: tokenizer, chat template and batching engine."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelserve.config import ModelSpec
from modelserve.engine.draft_model import DraftModel
from modelserve.engine.llm_engine import EngineConfig, EngineStats, LLMEngine
from modelserve.engine.model_runner import ModelRunner
from modelserve.engine.prompt_spill import PromptSpill
from modelserve.engine.prompt_store import PromptStore
from modelserve.engine.sequence import (
    ImageSpan,
    MultimodalPrompt,
    SamplingParams,
    Sequence,
    StepOutput,
)
from modelserve.images.decode import DecodedImage
from modelserve.kinds.options import LlamaCppOptions
from modelserve.kinds.wiring import KindRuntime
from modelserve.model_files import revision
from modelserve.runtimes.chat_vocab import ChatVocabulary
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel
from modelserve.runtimes.mtmd import MtmdProjector, PromptError

if TYPE_CHECKING:
    from modelserve.worker.methods import StreamOut

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
        self.drafter: DraftModel | None = None
        ctx: LlamaContext | None = None
        try:
            mmproj = opts.resolve_mmproj()
            if mmproj is not None:
                self.projector = MtmdProjector(mmproj, model, opts.threads,
                                               use_gpu=opts.gpu_layers != 0)
            ctx = LlamaContext(model, n_seq=opts.parallel, ctx_per_seq=opts.context_size,
                               batch_size=opts.batch_size, threads=opts.threads)
            store = _prompt_store(opts, path, ctx)
            draft_path = opts.resolve_draft_model()
            if draft_path is not None:
                self.drafter = DraftModel.load(draft_path, ctx, threads=opts.threads,
                                               gpu_layers=opts.gpu_layers)
            config = EngineConfig(
                max_waiting=opts.max_waiting, prefill_budget=opts.prefill_budget,
                draft_max=0 if opts.speculation == "off" else opts.draft_max,
                ngram={"ngram": True, "auto": None}.get(opts.speculation, False),
                draft_streams=opts.draft_streams,
                force_draft_model=opts.speculation == "draft_model")
            self.engine = LLMEngine(ModelRunner(model, ctx, store), model, config, store,
                                    self.drafter)
            logger.info("warm-up decode of %s", spec.name)  # the last line if the build faults
            self.engine.start()
        except Exception:
            if self.drafter is not None:
                self.drafter.close()
            if ctx is not None:
                ctx.close()
            if self.projector is not None:
                self.projector.close()
            model.close()
            raise
        self.ctx = ctx
        self._init_text(model, opts)
        self.created = int(time.time())
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
        """What the API process's front needs to know (see fronts/chat.py)."""
        return {"context_size": self.context_size, "image_marker": self.image_marker,
                "capacity": self.options.parallel + self.options.max_waiting,
                "created": self.created}

    def close(self) -> None:
        self.engine.stop()
        self.engine.persist()
        if self.engine.store is not None:
            self.engine.store.close()
        self.ctx.close()
        if self.drafter is not None:
            self.drafter.close()
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

    def generate(self, prompt: list[int], params: SamplingParams, images: list[ImageSpan],
                 out: StreamOut) -> Callable[[], None]:
        """A stream method: the sequence's outputs, each as the engine thread makes it, then
        the stream's end (after the output with a finish_reason). Raises QueueFull at
        capacity; returns the stream's cancel (the sequence then ends "cancelled")."""
        if images:  # spans that crossed the pipe come without their embeddings
            assert self.projector is not None
            self.projector.attach(images)

        def sink(output: StepOutput) -> None:
            out.send(output)
            if output.finish_reason is not None:
                out.end()

        seq = Sequence(prompt=list(prompt), params=params, images=images, sink=sink)
        self.engine.submit(seq)
        return lambda: self.engine.abort(seq.id)


def _prompt_store(opts: LlamaCppOptions, path: Path, ctx: LlamaContext) -> PromptStore | None:
    if not opts.host_cache_mb:
        return None
    spill = None
    if opts.host_cache_dir:
        # A state fits only the same weights (file revisions) and the same slot size.
        mmproj = opts.resolve_mmproj()
        identity = "-".join([revision(path), revision(mmproj) if mmproj else "text",
                             f"ctx{ctx.ctx_per_seq}"])
        spill = PromptSpill(Path(os.path.expanduser(opts.host_cache_dir)), identity,
                            opts.host_cache_disk_mb << 20)
    return PromptStore(opts.host_cache_mb << 20, spill)


def _describe(runtime: LlamaChatRuntime) -> dict[str, Any]:
    return runtime.describe()


def _stats(runtime: LlamaChatRuntime) -> EngineStats:
    return runtime.engine.snapshot()


def _step_hook(runtime: LlamaChatRuntime, flush: Callable[[], None]) -> None:
    runtime.engine.after_step = flush


def _set_threads(runtime: LlamaChatRuntime, threads: int) -> bool:
    runtime.ctx.set_threads(threads)  # the vision projector's stay until the next load
    if runtime.drafter is not None:
        runtime.drafter.set_threads(threads)
    return True


CHAT_RUNTIME = KindRuntime(build=LlamaChatRuntime, describe=_describe, stats=_stats,
                           step_hook=_step_hook, set_threads=_set_threads)
