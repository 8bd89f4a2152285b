"""What an embeddings backend offers the runtime (runtimes/embeddings.py), whichever library
runs it (ONNX Runtime, sentence-transformers, or the split of the two)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from modelserve.runtimes.st_layout import Floats


class EmbeddingBackend(Protocol):
    dimension: int
    vocab_size: int
    max_seq_length: int
    # a `tokenizers` file that tokenizes exactly as `tokenize`, or None
    @property
    def tokenizer_file(self) -> Path | None: ...

    def tokenize(self, text: str) -> list[int]: ...

    def encode(self, batch: list[list[int]]) -> Floats: ...
