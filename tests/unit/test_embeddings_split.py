"""The split backend: passes of 128+ padded tokens (24+ when traced) on torch bf16, smaller
ones on ONNX; many short rows on one torch thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelserve.runtimes.embeddings_split import TRACED_MIN_TOKENS, SplitBackend, torch_threads
from modelserve.runtimes.st_layout import Floats


class Fake:
    """Encodes each input as [marker, length]; remembers its passes and their threads."""

    def __init__(self, marker: float) -> None:
        self.marker = marker
        self.dimension = 2
        self.vocab_size = 100
        self.max_seq_length = 512
        self.tokenizer_file: Path | None = None
        self.passes: list[tuple[list[int], int | None]] = []

    def tokenize(self, text: str) -> list[int]:
        return [1] * len(text.split())

    def encode(self, batch: list[list[int]]) -> Floats:
        return self.encode_on(batch, None)

    def encode_on(self, batch: list[list[int]], threads: int | None) -> Floats:
        self.passes.append(([len(tokens) for tokens in batch], threads))
        return np.array([[self.marker, len(tokens)] for tokens in batch], dtype=np.float32)


def test_small_passes_go_to_onnx_large_ones_to_torch_in_order() -> None:
    onnx, torch = Fake(1.0), Fake(2.0)
    split = SplitBackend(onnx, torch)
    assert split.encode([[7] * 10 for _ in range(16)])[:, 0].tolist() == [2.0] * 16
    assert split.encode([[7] * 40 for _ in range(4)])[:, 0].tolist() == [2.0] * 4
    assert split.encode([[7] * 203])[:, 0].tolist() == [2.0]
    # under 128 padded tokens: ONNX, one pass
    assert split.encode([[7] * 10 for _ in range(8)])[:, 0].tolist() == [1.0] * 8
    assert split.encode([[7] * 100])[:, 0].tolist() == [1.0]
    lengths = [10, 300, 64, 3]
    out = split.encode([[7] * n for n in lengths])
    assert out[:, 1].tolist() == lengths  # each row is its own input's
    assert onnx.passes == [([10] * 8, None), ([100], None)]


def test_many_short_rows_run_on_one_torch_thread() -> None:
    onnx, torch = Fake(1.0), Fake(2.0)
    split = SplitBackend(onnx, torch)
    split.encode([[7] * 13 for _ in range(25)])  # 64 clients of short texts
    split.encode([[7] * 13 for _ in range(40)])  # 520 padded tokens: all threads
    split.encode([[7] * 203 for _ in range(2)])  # long inputs: all threads
    assert [threads for _, threads in torch.passes] == [1, None, None]
    assert torch_threads(7, 7 * 60) is None and torch_threads(8, 8 * 63) == 1


def test_a_traced_bf16_side_takes_passes_from_24_padded_tokens() -> None:
    onnx, traced = Fake(1.0), Fake(2.0)
    split = SplitBackend(onnx, traced, TRACED_MIN_TOKENS)
    assert split.encode([[7] * 12, [7] * 12])[:, 0].tolist() == [2.0, 2.0]  # two short inputs
    assert split.encode([[7] * 24])[:, 0].tolist() == [2.0]
    assert split.encode([[7] * 23])[:, 0].tolist() == [1.0]  # a lone short input: ONNX
    assert split.encode([[7] * 11, [7] * 11])[:, 0].tolist() == [1.0, 1.0]


def test_passes_under_128_padded_tokens_run_on_one_torch_thread() -> None:
    assert torch_threads(2, 24) == 1 and torch_threads(4, 4 * 31) == 1
    assert torch_threads(2, 2 * 64) is None and torch_threads(1, 203) is None
