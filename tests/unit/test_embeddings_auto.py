"""`runtime: auto` for embeddings: the rule, the cache key and the config default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelserve.config import ModelSpec
from modelserve.kinds.options import EmbeddingOptions
from modelserve.runtimes import embeddings_auto
from modelserve.runtimes.embeddings_auto import ONNX, ST, choose, revision


def st_dir(root: Path, model_type: str = "bert") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "modules.json").write_text("[]")
    (root / "tokenizer.json").write_text("{}")
    (root / "config.json").write_text(json.dumps({"model_type": model_type}))
    (root / "model.safetensors").write_bytes(b"weights")
    return root


@pytest.fixture()
def exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Stands in for the real export (tests/integration covers it): records each call."""
    monkeypatch.setenv("MODEL_CACHE", str(tmp_path / "cache"))
    calls: list[Path] = []

    def fake_export(src: Path, dst: Path, **_: object) -> Path:
        calls.append(src)
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "model.onnx").write_bytes(b"onnx")
        return dst
    monkeypatch.setattr("modelserve.export_onnx.export_onnx", fake_export)
    return calls


def test_an_onnx_directory_runs_on_onnx_as_it_is(tmp_path: Path, exports: list[Path]) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    assert choose(tmp_path) == (ONNX, tmp_path) and exports == []


def test_a_bert_st_directory_is_exported_once_into_the_cache(tmp_path: Path,
                                                             exports: list[Path]) -> None:
    src = st_dir(tmp_path / "st")
    backend, directory = choose(src)
    assert backend == ONNX and (directory / "model.onnx").is_file()
    assert directory.parent == tmp_path / "cache" / "onnx-auto"
    assert choose(src) == (ONNX, directory) and exports == [src]  # second load: cached
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]  # no staging left


def test_other_encoders_and_incomplete_directories_run_on_st(tmp_path: Path,
                                                              exports: list[Path]) -> None:
    t5 = st_dir(tmp_path / "t5", model_type="t5")
    assert choose(t5) == (ST, t5)
    bare = st_dir(tmp_path / "bare")
    (bare / "modules.json").unlink()
    assert choose(bare) == (ST, bare) and exports == []


def test_a_failed_export_falls_back_to_st(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          exports: list[Path]) -> None:
    def broken(src: Path, dst: Path, **_: object) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "partial").write_text("x")
        raise RuntimeError("torch.onnx says no")
    monkeypatch.setattr("modelserve.export_onnx.export_onnx", broken)
    src = st_dir(tmp_path / "st")
    assert choose(src) == (ST, src)
    assert list((tmp_path / "cache" / "onnx-auto").iterdir()) == []


def test_revision_follows_the_weights(tmp_path: Path) -> None:
    src = st_dir(tmp_path / "st")
    before = revision(src)
    assert revision(src) == before
    weights = src / "model.safetensors"
    weights.write_bytes(b"new weights")
    os.utime(weights, ns=(1, 1))
    assert revision(src) != before


def test_embeddings_default_to_auto_and_explicit_runtimes_stay() -> None:
    spec = ModelSpec(name="e", kind="embeddings", source="/x")
    assert spec.runtime == "auto" and isinstance(spec.options, EmbeddingOptions)
    assert ModelSpec(name="e", runtime="auto", source="/x").kind == "embeddings"
    for runtime in ("onnx", "sentence-transformers"):
        assert ModelSpec(name="e", kind="embeddings", runtime=runtime, source="/x"
                         ).runtime == runtime


def test_cache_root_follows_model_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_CACHE", str(tmp_path))
    assert embeddings_auto.cache_root() == tmp_path / "onnx-auto"
