"""Which kind of model a path holds, from the files a library would load it from."""

from __future__ import annotations

import json
from pathlib import Path

from modelserve.detect.found import Found
from modelserve.detect.gguf_model import detect_gguf, is_gguf, is_projector
from modelserve.sources import ConfigError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
WHISPER_VOCABULARIES = ("vocabulary.txt", "vocabulary.json", "tokenizer.json")
# What an error says was looked for (keep in step with detect_directory).
LOOKED_FOR = (
    "a GGUF file (chat on llama.cpp); a Piper voice (.onnx beside its .onnx.json); "
    "a directory holding model_index.json (diffusers: images), model.bin + config.json + "
    "vocabulary (CTranslate2 Whisper: transcription), a ForSequenceClassification "
    "config.json + tokenizer (cross-encoder: rerank), model.onnx + tokenizer.json "
    "(ONNX embeddings), modules.json or config_sentence_transformers.json "
    "(sentence-transformers embeddings), a Piper voice, or one GGUF")


def detect_path(path: Path) -> Found:
    """The model at an existing path; ConfigError when nothing known is there."""
    if path.is_dir():
        return detect_directory(path)
    if is_gguf(path):
        return detect_gguf(path)
    if path.suffix.lower() == ".onnx" and _voice_config(path).is_file():
        return Found(kind="speech", source=path)
    raise ConfigError(f"{path}: not a model modelserve recognises; looked for {LOOKED_FOR}")


def detect_directory(path: Path) -> Found:
    names = {p.name for p in path.iterdir()}
    if "model_index.json" in names:
        return Found(kind="images", source=path, runtime="diffusers")
    if {"model.bin", "config.json"} <= names and names.intersection(WHISPER_VOCABULARIES):
        return Found(kind="transcription", source=path, runtime="faster-whisper")
    if _is_cross_encoder(path, names):
        return Found(kind="rerank", source=path, runtime="cross-encoder")
    if {"model.onnx", "tokenizer.json"} <= names:
        return Found(kind="embeddings", source=path, runtime="onnx")
    if names.intersection({"modules.json", "config_sentence_transformers.json"}):
        return Found(kind="embeddings", source=path)  # `auto`: ONNX or torch, as measured
    voices = sorted(p for p in path.glob("*.onnx") if _voice_config(p).is_file())
    if len(voices) == 1:
        return Found(kind="speech", source=voices[0])
    if len(voices) > 1:
        raise ConfigError(f"{path} holds {len(voices)} Piper voices "
                          f"({', '.join(v.name for v in voices)}): name one file")
    ggufs = sorted(p for p in path.glob("*.gguf") if not is_projector(p))
    if len(ggufs) == 1:
        return detect_gguf(ggufs[0])
    if len(ggufs) > 1:
        raise ConfigError(f"{path} holds {len(ggufs)} GGUF models "
                          f"({', '.join(g.name for g in ggufs)}): name one file")
    raise ConfigError(f"{path}: no model modelserve recognises; looked for {LOOKED_FOR}")


def _voice_config(voice: Path) -> Path:
    return voice.with_name(voice.name + ".json")


def _is_cross_encoder(path: Path, names: set[str]) -> bool:
    """A Hugging Face sequence classifier with its tokenizer (what CrossEncoder loads)."""
    if "config.json" not in names or not names.intersection(TOKENIZER_FILES):
        return False
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(architectures, list) and any(
        isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures)
