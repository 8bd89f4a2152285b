"""Each embedding pass on the backend that measured fastest for it (docs/benchmarks.md,
"Embeddings: one pass, the fastest backend").

In fp32, ONNX Runtime and torch are even at 64 tokens; ONNX is faster below (1.05x at 32
tokens, 1.67x for a single short input) and torch above: so inputs of up to 64 tokens run on
ONNX and longer ones on torch, each by its own length, and a text gets the same vector
whatever it is batched with. On CPUs with bf16 matrix units (AMX, AVX512-BF16), torch under
bf16 autocast is 1.3-3.1x faster than either at every length once a pass holds 128 padded
tokens or more (16 rows of 10 tokens, 4 of 40), and stays within cosine 0.99996 of fp32:
there, such passes run on torch in bf16, and smaller ones (a lone request's) on ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelserve.engine.embed_batcher import plan_batches
from modelserve.llama_build import cpu_flags
from modelserve.runtimes.embeddings import EmbeddingBackend
from modelserve.runtimes.st_layout import Floats

# Inputs of at most this many tokens run on ONNX Runtime in fp32 (the measured crossover).
SHORT_TOKENS = 64
# With bf16 torch: passes of this many padded tokens (rows x longest) or more run there; below
# it ONNX fp32 is faster (measured at 10 and 40 tokens per input, 1 to 64 rows).
BF16_MIN_TOKENS = 128
# ONNX Runtime runs small passes faster than big ones here; torch the other way round.
ONNX_PASS_TOKENS = 512


def has_fast_bf16() -> bool:
    """bf16 matrix instructions: AMX tiles or AVX512-BF16 (torch autocast uses them)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


class SplitBackend:
    def __init__(self, short: EmbeddingBackend, long: EmbeddingBackend, bf16: bool = False,
                 short_tokens: int = SHORT_TOKENS) -> None:
        """`short`: ONNX fp32; `long`: torch, in bf16 when `bf16`."""
        self._short, self._long = short, long
        self._bf16 = bf16
        self._short_tokens = short_tokens
        self.dimension = short.dimension
        self.vocab_size = short.vocab_size
        self.max_seq_length = min(short.max_seq_length, long.max_seq_length)
        # Both sides take token ids from this one tokenizer (the API process's, too).
        self.tokenizer_file: Path | None = short.tokenizer_file

    def tokenize(self, text: str) -> list[int]:
        return self._short.tokenize(text)

    def encode(self, batch: list[list[int]]) -> Floats:
        out = np.empty((len(batch), self.dimension), dtype=np.float32)
        if self._bf16 and len(batch) * max(map(len, batch), default=0) >= BF16_MIN_TOKENS:
            out[:] = self._long.encode(batch)
            return out
        short = [i for i, tokens in enumerate(batch) if len(tokens) <= self._short_tokens]
        long = [i for i, tokens in enumerate(batch) if len(tokens) > self._short_tokens]
        for rows in plan_batches([len(batch[i]) for i in short], ONNX_PASS_TOKENS):
            picked = [short[r] for r in rows]
            out[picked] = self._short.encode([batch[i] for i in picked])
        if long:
            out[long] = self._long.encode([batch[i] for i in long])
        return out
