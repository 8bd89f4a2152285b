"""A GGUF file: a chat model on llama.cpp, unless its metadata says it embeds text."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelserve.detect.found import Found
from modelserve.sources import ConfigError

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# Without --ctx a model gets its trained context up to this: KV memory grows with it in
# every slot, and 128K-context models would otherwise take gigabytes before their first
# request.
DEFAULT_CONTEXT_CAP = 4096
# llama.cpp's encoder-only architectures: they pool, they do not generate.
EMBEDDING_ARCHITECTURES = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
    "neo-bert", "eurobert", "t5encoder"})


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(4) == GGUF_MAGIC
    except OSError:
        return False


def is_projector(path: Path) -> bool:
    return path.name.lower().startswith("mmproj") and path.suffix.lower() == ".gguf"


def gguf_metadata(path: Path) -> dict[str, Any]:
    # What Ollama's /api/show reads too: a vocabulary-only llama.cpp load, no weights.
    # (The `gguf` package's reader parses the whole vocabulary in Python: 20 s for Gemma.)
    from modelserve.gguf_metadata import metadata

    return metadata(path)


def is_embedding_model(meta: dict[str, Any]) -> bool:
    arch = str(meta.get("general.architecture", ""))
    if arch in EMBEDDING_ARCHITECTURES:
        return True
    # A decoder converted for embeddings (Qwen3-Embedding, ...) says how it pools.
    return f"{arch}.pooling_type" in meta and "tokenizer.chat_template" not in meta


def projector_beside(path: Path) -> Path | None:
    """The one `mmproj*.gguf` in the model's folder. With several, none: which one matches
    the model is not written anywhere this can read cheaply."""
    found = sorted(p for p in path.parent.iterdir() if is_projector(p) and p != path)
    if len(found) > 1:
        logger.warning("%s: %d vision projectors beside it (%s); serving it as text only: "
                       "name one in a config's options.mmproj", path, len(found),
                       ", ".join(p.name for p in found))
    return found[0] if len(found) == 1 else None


def detect_gguf(path: Path) -> Found:
    if is_projector(path):
        raise ConfigError(f"{path} is a vision projector (mmproj): serve the model GGUF "
                          "beside it, which takes its projector along")
    meta = gguf_metadata(path)
    if not meta:
        raise ConfigError(f"{path}: llama.cpp cannot read this GGUF")
    arch = meta.get("general.architecture", "?")
    if is_embedding_model(meta):
        raise ConfigError(f"{path} is an embeddings model ({arch}); modelserve serves "
                          "embeddings from sentence-transformers or ONNX directories, "
                          "not from GGUF")
    options: dict[str, Any] = {}
    trained = meta.get(f"{arch}.context_length")
    if isinstance(trained, int) and trained > 0:
        options["context_size"] = min(trained, DEFAULT_CONTEXT_CAP)
    projector = projector_beside(path)
    if projector is not None:
        options["mmproj"] = str(projector)
    return Found(kind="chat", source=path, runtime="llama.cpp", options=options)
