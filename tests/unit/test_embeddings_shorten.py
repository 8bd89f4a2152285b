"""Matryoshka shortening, a pure function of the embeddings runtime."""

from __future__ import annotations

import numpy as np

from modelserve.runtimes.embeddings import shorten


def test_shorten_keeps_the_prefix_direction_at_unit_length() -> None:
    vector = np.array([3.0, 4.0, 12.0], dtype=np.float32) / 13.0
    short = shorten(vector, 2)
    assert short.dtype == np.float32 and short.shape == (2,)
    np.testing.assert_allclose(short, [0.6, 0.8], rtol=1e-6)
