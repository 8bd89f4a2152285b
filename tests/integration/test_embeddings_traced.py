"""The traced bf16 encoder on the real MiniLM: the eager model's vectors for padded batches of
any shape, and no traced encoder where it could answer wrong."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from modelserve.loadgen.embeddings import make_text
from modelserve.runtimes.embeddings import SentenceTransformersBackend
from modelserve.runtimes.embeddings_traced import traced_or_none
from modelserve.sources import PackageSource
from tests.conftest import MINILM


@pytest.fixture(scope="module")
def eager() -> SentenceTransformersBackend:
    return SentenceTransformersBackend(PackageSource(**MINILM).resolve(), 1, bf16=True)


def test_traced_vectors_match_fp32_for_padded_batches_of_any_shape(
        eager: SentenceTransformersBackend) -> None:
    directory = PackageSource(**MINILM).resolve()
    traced = traced_or_none(eager, directory)
    assert traced is not None
    fp32 = SentenceTransformer(str(directory), device="cpu")
    for rows, words in ((1, 30), (2, 8), (5, 3), (9, 60)):
        # lengths differ within a batch, so every batch but the lone input is padded
        texts = [make_text(i, words + 3 * i) for i in range(rows)]
        got = traced.encode_on([eager.tokenize(text) for text in texts], None)
        want = np.asarray(fp32.encode(texts), dtype=np.float32)
        assert got.shape == want.shape
        assert (got * want).sum(axis=1).min() >= 0.9999  # the README's bound for bf16


def test_no_traced_encoder_where_pooling_in_numpy_cannot_stand_in(
        eager: SentenceTransformersBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eager, "module_names", ["Transformer", "Pooling", "Dense"])
    assert traced_or_none(eager, PackageSource(**MINILM).resolve()) is None


def test_no_traced_encoder_whose_vectors_differ_from_the_eager_model(
        eager: SentenceTransformersBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def elsewhere(batch: list[list[int]], threads: int | None) -> np.ndarray:
        return np.eye(len(batch), 384, k=7, dtype=np.float32)

    monkeypatch.setattr(eager, "encode_on", elsewhere)
    assert traced_or_none(eager, PackageSource(**MINILM).resolve()) is None
