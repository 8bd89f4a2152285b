"""The mtmd wrapper on the real SmolLM2 GGUF and the tiny test projector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelserve.images.decode import ImageLimits, decode_image
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaError, LlamaModel
from modelserve.runtimes.mtmd import MtmdProjector, PromptError, pseudo_token
from modelserve.sources import PackageSource
from tests.conftest import SMOLLM2
from tests.fixtures.images import image_bytes
from tests.fixtures.tiny_mmproj import TinyMmproj, write_tiny_mmproj

LIMITS = ImageLimits(1 << 20, 1 << 20, 4096)


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(PackageSource(**SMOLLM2).resolve())
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def projector(model: LlamaModel, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[MtmdProjector]:
    path = write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "tiny.gguf")
    loaded = MtmdProjector(path, model, threads=1, use_gpu=False)
    yield loaded
    loaded.close()


def test_prepare_splits_text_and_images(projector: MtmdProjector) -> None:
    images = [decode_image(image_bytes(seed=s), LIMITS) for s in (1, 2)]
    m = projector.marker
    prompt = projector.prepare(f"a {m} b {m} c", images, add_special=False)
    n = TinyMmproj().image_tokens
    assert [s.n_tokens for s in prompt.images] == [n, n] and prompt.image_tokens == 2 * n
    first, second = prompt.images
    assert prompt.tokens[first.start:first.end] == [pseudo_token(images[0].digest, 0)] * n
    assert prompt.tokens[second.start] == pseudo_token(images[1].digest, 0)
    assert first.embd.shape == (n, 576) and np.isfinite(first.embd).all()
    assert first.pos.tolist() == [list(range(first.start, first.end))]
    assert not first.non_causal and first.n_pos == n


def test_prepare_refuses_mismatches(projector: MtmdProjector) -> None:
    image = decode_image(image_bytes(), LIMITS)
    with pytest.raises(PromptError, match=r"0 image place\(s\) for the 1 image"):
        projector.prepare("no marker here", [image], add_special=False)
    with pytest.raises(PromptError, match="end with text"):
        projector.prepare(f"text then {projector.marker}", [image], add_special=False)


def test_embeddings_decode_into_a_slot(model: LlamaModel, projector: MtmdProjector) -> None:
    image = decode_image(image_bytes(), LIMITS)
    prompt = projector.prepare(f"see {projector.marker} now", [image], add_special=False)
    ctx = LlamaContext(model, n_seq=2, ctx_per_seq=128, batch_size=32, threads=1)
    try:
        span = prompt.images[0]
        head = prompt.tokens[:span.start]
        ctx.decode(head, list(range(len(head))), [1] * len(head), [False] * len(head))
        ctx.decode_embeddings(span.embd, span.pos, seq_id=1)
        tail = prompt.tokens[span.end:]
        ctx.decode(tail, list(range(span.end, len(prompt.tokens))), [1] * len(tail),
                   [False] * (len(tail) - 1) + [True])
        assert np.isfinite(ctx.logits(len(tail) - 1)).all()
        with pytest.raises(LlamaError, match="exceeds"):
            ctx.decode_embeddings(np.zeros((40, 576), np.float32),
                                  np.zeros((1, 40), np.int32), seq_id=0)
    finally:
        ctx.close()


def test_a_projector_for_another_model_is_refused(model: LlamaModel, tmp_path: Path) -> None:
    path = write_tiny_mmproj(tmp_path / "wide.gguf", TinyMmproj(text_embd=64))
    with pytest.raises(LlamaError, match="could not load the projector"):
        MtmdProjector(path, model, threads=1, use_gpu=False)
