"""Embeddings models: an ONNX Runtime or a sentence-transformers backend behind one runtime."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config import ModelSpec
from modelserve.engine.embed_batcher import BatchStats, EmbeddingBatcher
from modelserve.failures import QueueFull, WorkerDied
from modelserve.kinds.options import EmbeddingOptions
from modelserve.kinds.wiring import KindRuntime
from modelserve.runtimes.embedding_backend import EmbeddingBackend
from modelserve.runtimes.st_layout import (
    EmbeddingLayout,
    Floats,
    LayoutError,
    normalize,
    pad_batch,
)

logger = logging.getLogger(__name__)


# Padded tokens per forward pass when the config names none. ONNX Runtime runs a batch op by
# op over the whole batch, so a 32 x 203-token batch streams every activation through memory;
# 512-token passes keep them in cache: +25-33 % emb/s on 200-word texts through the server,
# short texts unchanged (docs/benchmarks.md). torch gains from large batches instead.
# The split backend's passes of 128+ tokens run on torch, which likes big ones.
DEFAULT_BATCH_TOKENS = {"onnx": 512, "sentence-transformers": 8192, "split": 8192}


class OnnxBackend:
    """onnxruntime + tokenizers over a directory made by `modelserve export-onnx`."""

    def __init__(self, directory: Path, threads: int | None, spinning: bool = False) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if not (directory / "model.onnx").is_file():
            raise LayoutError(f"{directory} has no model.onnx")
        self.layout = EmbeddingLayout.read(directory)
        self.tokenizer_file: Path | None = directory / "tokenizer.json"
        self._tokenizer = Tokenizer.from_file(str(self.tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # Off by default: spinning ORT workers take the cores the API process needs to parse
        # the next requests (through the server: -7 to -18 % on 8-word texts one per
        # request, 0 to +10 % on 200-word ones; docs/benchmarks.md), hence only an option.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        self._session = ort.InferenceSession(str(directory / "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.vocab_size = self._tokenizer.get_vocab_size()
        self.max_seq_length = self.layout.max_seq_length
        self.dimension = int(self.encode([[self._tokenizer.token_to_id("[CLS]") or 0]]).shape[1])

    def tokenize(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text).ids)

    def encode(self, batch: list[list[int]]) -> Floats:
        ids, mask = pad_batch(batch)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        return self.layout.pool(np.asarray(hidden, dtype=np.float32), mask)


class SentenceTransformersBackend:
    """Any sentence-transformers model directory, on torch (CPU, or CUDA when present)."""

    def __init__(self, directory: Path, threads: int | None, bf16: bool = False) -> None:
        """`bf16`: run under CPU bf16 autocast (AMX / AVX512-BF16; cos >= 0.9999 to fp32)."""
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch = torch
        self._model = SentenceTransformer(str(directory), device=device, local_files_only=True)
        self._model.eval()
        self._bf16 = bf16 and device == "cpu"
        self.threads = threads or torch.get_num_threads()
        if self._bf16:
            # Autocast would cast every Linear's fp32 weights to bf16 on every pass; cast once
            # here instead. Same values, so the same vectors: +15 % on short passes.
            for module in self._model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        self._tokenizer: Any = self._model.tokenizer
        self.pad_id = int(self._tokenizer.pad_token_id or 0)
        self.module_names = [type(module).__name__ for module in self._model]
        self.tokenizer_file = None  # transformers' tokenizer: its own rules, so ask the worker
        self.vocab_size = int(self._tokenizer.vocab_size)
        self.max_seq_length = int(self._model.max_seq_length or 512)
        dimension = getattr(self._model, "get_embedding_dimension", None) \
            or self._model.get_sentence_embedding_dimension
        self.dimension = int(dimension() or 0)

    @property
    def transformer(self) -> Any:
        """The model under sentence-transformers' first module (a transformers model)."""
        return self._model[0].auto_model

    def tokenize(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=True, truncation=False,
                                    verbose=False)["input_ids"])

    def encode(self, batch: list[list[int]]) -> Floats:
        return self.encode_on(batch, None)

    def set_threads(self, threads: int) -> bool:
        """The thread count of the next passes (encode_on sets torch's before each)."""
        self.threads = threads
        return True

    def encode_on(self, batch: list[list[int]], threads: int | None) -> Floats:
        """`encode` on `threads` intra-op threads (None: the configured count)."""
        wanted = threads or self.threads
        if self._torch.get_num_threads() != wanted:
            self._torch.set_num_threads(wanted)
        ids, mask = pad_batch(batch, self.pad_id)
        device = self._model.device
        features = {"input_ids": self._torch.from_numpy(ids).to(device),
                    "attention_mask": self._torch.from_numpy(mask).to(device),
                    "token_type_ids": self._torch.zeros_like(self._torch.from_numpy(ids))
                    .to(device)}
        with self._torch.inference_mode(), \
                self._torch.autocast("cpu", dtype=self._torch.bfloat16, enabled=self._bf16):
            out = self._model(features)["sentence_embedding"]
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)


def _split(onnx_dir: Path, st_dir: Path, opts: EmbeddingOptions) -> EmbeddingBackend:
    from modelserve.runtimes.embeddings_split import TRACED_MIN_TOKENS, SplitBackend
    from modelserve.runtimes.embeddings_traced import traced_or_none

    eager = SentenceTransformersBackend(st_dir, opts.threads, bf16=True)
    traced = traced_or_none(eager, st_dir)
    onnx = OnnxBackend(onnx_dir, opts.threads, opts.spinning)
    return SplitBackend(onnx, eager) if traced is None else \
        SplitBackend(onnx, traced, TRACED_MIN_TOKENS)


def shorten(vector: Floats, dimensions: int) -> Floats:
    """A Matryoshka vector cut to its first `dimensions`, back at unit length (a prefix of a
    unit vector is shorter, and cosine scores assume unit vectors)."""
    return normalize(np.asarray(vector)[:dimensions])


class EmbeddingRuntime:
    def __init__(self, spec: ModelSpec) -> None:
        opts = spec.options_as(EmbeddingOptions)
        started = time.monotonic()
        directory = spec.resolve_source()
        self.spec = spec
        self.backend_name = spec.runtime
        self.backend: EmbeddingBackend
        if spec.runtime == "auto":
            from modelserve.runtimes.embeddings_auto import choose
            from modelserve.runtimes.embeddings_split import has_fast_bf16

            self.backend_name, exported = choose(directory)
            if self.backend_name == "onnx" and exported != directory and \
                    opts.precision == "auto" and has_fast_bf16():
                # A sentence-transformers directory, also exported, on a CPU with bf16
                # units: large passes on torch in bf16, small ones on ONNX.
                self.backend_name = "split"
                self.backend = _split(exported, directory, opts)
            directory = exported
        if self.backend_name != "split":
            self.backend = (
                OnnxBackend(directory, opts.threads, opts.spinning)
                if self.backend_name == "onnx"
                else SentenceTransformersBackend(directory, opts.threads))
        self.max_tokens = min(opts.max_tokens or self.backend.max_seq_length,
                              self.backend.max_seq_length)
        self.max_inputs = opts.max_inputs
        self.max_waiting_inputs = opts.max_waiting_inputs
        self.matryoshka = opts.matryoshka
        self.max_batch_tokens = opts.max_batch_tokens or DEFAULT_BATCH_TOKENS[self.backend_name]
        self.batcher = EmbeddingBatcher(self.backend.encode, self.max_batch_tokens,
                                        opts.max_batch_wait_ms)
        self.created = int(time.time())
        logger.info("loaded %s (%s, dim %d) from %s in %.2fs", spec.name, self.backend_name,
                    self.backend.dimension, directory, time.monotonic() - started)

    @property
    def dimension(self) -> int:
        return self.backend.dimension

    @property
    def n_vocab(self) -> int:
        return self.backend.vocab_size

    def tokenize(self, text: str) -> list[int]:
        return self.backend.tokenize(text)

    def tokenize_all(self, texts: list[str]) -> list[list[int]]:
        """Every text at once: one call from the API process, for a model whose tokenizer
        it cannot run itself (sentence-transformers' own)."""
        return [self.backend.tokenize(text) for text in texts]

    def describe(self) -> dict[str, Any]:
        """What the API process's front needs (see fronts/embeddings.py)."""
        file = self.backend.tokenizer_file
        return {"dimension": self.dimension, "n_vocab": self.n_vocab,
                "max_tokens": self.max_tokens, "max_inputs": self.max_inputs,
                "max_waiting_inputs": self.max_waiting_inputs,
                "matryoshka": self.matryoshka, "created": self.created,
                "backend": self.backend_name,
                "tokenizer_file": str(file) if file is not None else None}

    async def embed(self, inputs: list[list[int]], dimensions: int | None = None
                    ) -> list[Floats]:
        """One vector per input; `dimensions` shortens each (`shorten`). The caller has
        checked that the model is `matryoshka` and `dimensions` at most `dimension`."""
        vectors = await self.batcher.embed(inputs)
        if dimensions is None:
            return vectors
        return [shorten(v, dimensions) for v in vectors]

    async def embed_many(self, jobs: list[tuple[list[list[int]], int | None]]
                         ) -> list[list[Floats] | BaseException]:
        """`embed` for several requests at once (what the API process gathered in one turn
        of its loop, sent as one message); each gets its vectors or its own error."""
        outcomes = await asyncio.gather(*(self.embed(inputs, dims) for inputs, dims in jobs),
                                        return_exceptions=True)
        # Errors travel back to the API process: as plain RuntimeErrors, which always pickle
        # (the model's own failures keep their type: they are answered 429 / 503).
        return [RuntimeError(f"embedding failed: {o}")
                if isinstance(o, BaseException) and not isinstance(o, QueueFull | WorkerDied)
                else o for o in outcomes]

    def close(self) -> None:
        self.batcher.close()


def _describe(runtime: EmbeddingRuntime) -> dict[str, Any]:
    return runtime.describe()


def _stats(runtime: EmbeddingRuntime) -> BatchStats:
    return runtime.batcher.stats


def _set_threads(runtime: EmbeddingRuntime, threads: int) -> bool:
    """Live on torch; an ONNX Runtime session keeps its pool until the next load."""
    setter = getattr(runtime.backend, "set_threads", None)
    return bool(setter(threads)) if setter is not None else False


EMBEDDINGS_RUNTIME = KindRuntime(build=EmbeddingRuntime, describe=_describe, stats=_stats,
                                 set_threads=_set_threads)
