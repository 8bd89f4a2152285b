"""A sentence-transformers encoder traced with TorchScript, its Linear layers in bf16.

Why: on CPUs with bf16 units torch's eager mode spends a small pass mostly in Python, one
dispatch per operation, so bf16 only beat ONNX Runtime fp32 from ~128 padded tokens a pass. A
frozen TorchScript graph of the same model dispatches in C++. all-MiniLM-L6-v2 on an Intel
Xeon (AMX), in-process, inputs/s against ONNX fp32 (bench/embeddings_small_passes.py):

    rows x tokens    1x12   2x12   4x12   8x12   1x24   2x24   1x48
    1 thread  eager  0.45x  0.71x  1.12x  1.56x  0.79x  1.13x  1.17x
              traced 0.71x  1.01x  1.55x  1.97x  1.16x  1.63x  1.71x
    2 threads eager  0.49x  0.64x  0.89x  1.27x  0.67x  0.98x  0.90x
              traced 0.75x  1.10x  1.24x  1.70x  1.09x  1.44x  1.34x

so the split backend sends it passes from 24 padded tokens, not from 128. The same arithmetic as
eager bf16 autocast (the casts are recorded in the graph): cosine >= 0.99997 to fp32.

Tracing records one run's control flow. Checked at load: the traced model must give the eager
model's vectors for a padded batch of another shape, or it is not used (the caller falls back
to eager), so a model whose code branches on shapes never answers wrong.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any, Protocol

import torch

from modelserve.runtimes.st_layout import EmbeddingLayout, Floats, normalize, pad_batch

logger = logging.getLogger(__name__)


class EagerBackend(Protocol):
    """What the tracer takes from the eager bf16 backend (SentenceTransformersBackend)."""

    dimension: int
    vocab_size: int
    max_seq_length: int
    pad_id: int
    threads: int
    module_names: list[str]

    @property
    def transformer(self) -> Any: ...

    def tokenize(self, text: str) -> list[int]: ...

    def set_threads(self, threads: int) -> bool: ...

    def encode_on(self, batch: list[list[int]], threads: int | None) -> Floats: ...

# What pooling in numpy (EmbeddingLayout.pool) can stand in for, after the transformer.
_POOLED_MODULES = ("Transformer", "Pooling", "Normalize")
# The traced model's vectors against eager bf16 ones: same casts, so only float noise.
_MIN_COSINE = 0.99999
# Traced on one batch, checked on another of other shapes, both with padding.
_TRACE_TEXTS = ("a short one", "and a second, longer input to pad the first")
_CHECK_TEXTS = ("three inputs of", "different lengths, padded", "to the longest of them all here")


class HiddenStates(torch.nn.Module):
    """The transformer's last hidden states as one tensor (what tracing wants out)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        # BERT-likes take segment ids (all zeros for one text); MPNet and others have none.
        self.segments = "token_type_ids" in inspect.signature(transformer.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.segments:
            out = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=torch.zeros_like(input_ids))
        else:
            out = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        hidden: torch.Tensor = out[0]
        return hidden


class TracedBf16Encoder:
    """`encode_on` as SentenceTransformersBackend's, on a frozen TorchScript graph."""

    def __init__(self, eager: EagerBackend, directory: Path) -> None:
        self.layout = EmbeddingLayout.read(directory)
        self._eager = eager  # its tokenizer, padding, sizes and threads are this encoder's too
        self.dimension, self.vocab_size = eager.dimension, eager.vocab_size
        self.max_seq_length = eager.max_seq_length
        self.tokenizer_file: Path | None = None
        ids, mask = pad_batch([eager.tokenize(text) for text in _TRACE_TEXTS], self._eager.pad_id)
        example = (torch.from_numpy(ids), torch.from_numpy(mask))
        # Autocast's casts go into the graph as operations (not the JIT's own autocast pass,
        # which would redo them): the Linear weights are bf16 already (the eager backend cast
        # them once), activations are cast at each Linear, LayerNorm and softmax run in fp32.
        torch._C._jit_set_autocast_mode(False)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                HiddenStates(eager.transformer), example)
            self._graph = torch.jit.freeze(traced.eval())
            for _ in range(2):  # the profiling runs the graph executor does before optimizing
                self._graph(*example)

    def tokenize(self, text: str) -> list[int]:
        return self._eager.tokenize(text)

    def set_threads(self, threads: int) -> bool:
        return self._eager.set_threads(threads)

    def encode(self, batch: list[list[int]]) -> Floats:
        return self.encode_on(batch, None)

    def encode_on(self, batch: list[list[int]], threads: int | None) -> Floats:
        """A pass on `threads` intra-op threads (None: the configured count)."""
        wanted = threads or self._eager.threads
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        ids, mask = pad_batch(batch, self._eager.pad_id)
        with torch.inference_mode():
            hidden = self._graph(torch.from_numpy(ids), torch.from_numpy(mask))
        return self.layout.pool(hidden.float().numpy(), mask)


def traced_or_none(eager: EagerBackend, directory: Path) -> TracedBf16Encoder | None:
    """The traced encoder, or None where the model cannot be traced faithfully (modules
    after pooling, a trace that fails, or vectors that differ from `eager`'s)."""
    if not all(name in _POOLED_MODULES for name in eager.module_names):
        logger.info("bf16 passes stay eager: modules %s", eager.module_names)
        return None
    try:
        with warnings.catch_warnings():
            # TracerWarnings (shape-dependent branches: the check below is what guards
            # against them) and TorchScript's deprecation notice, once per load
            warnings.simplefilter("ignore")
            encoder = TracedBf16Encoder(eager, directory)
        probe = [eager.tokenize(text) for text in _CHECK_TEXTS]
        traced, reference = encoder.encode_on(probe, None), eager.encode_on(probe, None)
    except Exception as exc:  # any failure here means: stay eager
        # TorchScript is deprecated in torch 2.x; where it is gone or cannot follow a
        # model's code, bf16 passes run eager from 128 tokens as before.
        logger.info("bf16 passes stay eager: tracing failed: %s", exc)
        return None
    cosine = float((normalize(traced) * normalize(reference)).sum(axis=1).min())
    if cosine < _MIN_COSINE:
        logger.info("bf16 passes stay eager: the traced model's vectors differ (cos %.6f)",
                    cosine)
        return None
    return encoder
