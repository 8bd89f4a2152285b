"""The split backend routes each input by its own length and keeps the batch's order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelserve.runtimes.embeddings_split import SplitBackend
from modelserve.runtimes.st_layout import Floats


class Fake:
    """Encodes each input as [marker, length]; remembers the passes it ran."""

    def __init__(self, marker: float) -> None:
        self.marker = marker
        self.dimension = 2
        self.vocab_size = 100
        self.max_seq_length = 512
        self.tokenizer_file: Path | None = None
        self.passes: list[list[int]] = []

    def tokenize(self, text: str) -> list[int]:
        return [1] * len(text.split())

    def encode(self, batch: list[list[int]]) -> Floats:
        self.passes.append([len(tokens) for tokens in batch])
        return np.array([[self.marker, len(tokens)] for tokens in batch], dtype=np.float32)


def test_short_inputs_go_to_onnx_long_ones_to_torch_in_order() -> None:
    short, long = Fake(1.0), Fake(2.0)
    split = SplitBackend(short, long, short_tokens=64)
    lengths = [10, 300, 64, 65, 3, 200]
    out = split.encode([[7] * n for n in lengths])
    assert out[:, 1].tolist() == lengths  # each row is its own input's
    assert out[:, 0].tolist() == [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    assert sorted(n for p in short.passes for n in p) == [3, 10, 64]
    assert long.passes == [[300, 65, 200]]  # one torch pass for the long ones


def test_onnx_passes_stay_within_512_padded_tokens() -> None:
    short, long = Fake(1.0), Fake(2.0)
    SplitBackend(short, long).encode([[7] * 60 for _ in range(20)])
    assert long.passes == [] and all(len(p) * max(p) <= 512 for p in short.passes)
    assert sum(len(p) for p in short.passes) == 20


def test_with_bf16_batched_passes_all_go_to_torch() -> None:
    short, long = Fake(1.0), Fake(2.0)
    split = SplitBackend(short, long, bf16=True)
    assert split.encode([[7] * 10 for _ in range(16)])[:, 0].tolist() == [2.0] * 16
    assert split.encode([[7] * 40 for _ in range(4)])[:, 0].tolist() == [2.0] * 4
    # under 128 padded tokens, ONNX: by length, as without bf16
    assert split.encode([[7] * 10 for _ in range(8)])[:, 0].tolist() == [1.0] * 8
