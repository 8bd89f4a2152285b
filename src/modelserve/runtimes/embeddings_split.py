"""Each embedding pass on the backend that measured fastest for it (docs/benchmarks.md,
"Embeddings: one pass, the fastest backend"), on CPUs with bf16 units.

Measured on two CPUs (Intel Xeon with AMX, AMD EPYC with AVX512-BF16), 2 threads:
- torch under bf16 autocast is 1.2-3.1x faster than ONNX Runtime fp32 once a pass holds 128
  padded tokens or more (16 rows of 10 tokens, 4 of 40, 1 of 203), and stays within cosine
  0.99996 of fp32; below that ONNX is faster (0.4-0.8x for a lone short input). So passes of
  128+ padded tokens run on torch in bf16, smaller ones (a lone request's) on ONNX.
- In fp32, ONNX Runtime is 1.5-2.2x faster than torch on the AMD CPU at every length and
  0.9x on the Intel one for long texts only: without bf16 units (or with `precision: fp32`)
  `auto` therefore runs ONNX alone, and this module is not used.
- A pass of many short rows is what many concurrent short requests make, and there the
  API process needs a core to parse them: a second torch thread makes such a pass (8-39 rows,
  under 512 padded tokens) only 1.3-1.4x faster for a whole core, so it runs on one thread
  (+10-25 % embeddings/s through the server at 64 clients). Lone inputs and long ones keep
  every thread: there the second one gains 1.6-1.9x.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from modelserve.llama_build import cpu_flags
from modelserve.runtimes.embedding_backend import EmbeddingBackend
from modelserve.runtimes.st_layout import Floats

# Passes of this many padded tokens (rows x longest) or more run on torch in bf16: eager torch,
# and the same model traced (embeddings_traced.py), which pays off from far smaller passes
# (two 12-token rows; a lone short input stays on ONNX).
BF16_MIN_TOKENS = 128
TRACED_MIN_TOKENS = 24
# A torch pass of at least this many rows and under this many padded tokens runs on 1 thread.
MANY_ROWS = 8
SMALL_PASS_TOKENS = 512


class ThreadedBackend(EmbeddingBackend, Protocol):
    def encode_on(self, batch: list[list[int]], threads: int | None) -> Floats: ...


def has_fast_bf16() -> bool:
    """bf16 matrix instructions: AMX tiles or AVX512-BF16 (torch autocast uses them)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def torch_threads(rows: int, padded_tokens: int) -> int | None:
    """Threads for one torch pass: 1 for many short rows and for any pass under 128 padded
    tokens (the traced encoder's few short rows: 2 cores, 4 clients, 354-363 emb/s on one
    thread against 233-256 on two, whose OpenMP workers spin after each pass on the core the
    API process needs), else the configured count."""
    small = padded_tokens < SMALL_PASS_TOKENS
    return 1 if small and (rows >= MANY_ROWS or padded_tokens < BF16_MIN_TOKENS) else None


class SplitBackend:
    def __init__(self, onnx: EmbeddingBackend, bf16: ThreadedBackend,
                 bf16_min_tokens: int = BF16_MIN_TOKENS) -> None:
        """`onnx`: ONNX Runtime fp32; `bf16`: torch under bf16 autocast, for passes of
        `bf16_min_tokens` padded tokens or more."""
        self._onnx, self._bf16 = onnx, bf16
        self.bf16_min_tokens = bf16_min_tokens
        self.dimension = onnx.dimension
        self.vocab_size = onnx.vocab_size
        self.max_seq_length = min(onnx.max_seq_length, bf16.max_seq_length)
        # Both sides take token ids from this one tokenizer (the API process's, too).
        self.tokenizer_file: Path | None = onnx.tokenizer_file

    def tokenize(self, text: str) -> list[int]:
        return self._onnx.tokenize(text)

    def set_threads(self, threads: int) -> bool:
        """The torch side's now; the ONNX side's at the next load (hence False)."""
        setter = getattr(self._bf16, "set_threads", None)
        if setter is not None:
            setter(threads)
        return False

    def encode(self, batch: list[list[int]]) -> Floats:
        padded = len(batch) * max(map(len, batch), default=0)
        if padded >= self.bf16_min_tokens:
            return self._bf16.encode_on(batch, torch_threads(len(batch), padded))
        return self._onnx.encode(batch)  # under bf16_min_tokens: one small pass
