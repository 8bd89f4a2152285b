"""A GGUF file's metadata (`general.architecture`, `<arch>.context_length`, the chat template,
...), read by llama.cpp's vocabulary-only load (no weights): what Ollama reports as a model's
`model_info` and `details`. The vocabulary's arrays are left out."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from modelserve.runtimes.llama_cpp import LlamaModel

# llama.cpp's file types (general.file_type), as Ollama names quantization levels.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
              15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
              20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
              25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS",
              31: "IQ1_M", 32: "BF16"}


@functools.lru_cache(maxsize=32)
def _cached(path: str, mtime_ns: int) -> dict[str, Any]:
    model = LlamaModel(Path(path), vocab_only=True)
    try:
        return {key: _scalar(value) for key, value in model.metadata().items()
                if not key.startswith("tokenizer.ggml.")}  # the vocabulary: not a fact
    finally:
        model.close()


def _scalar(text: str) -> Any:
    """llama.cpp gives every value as text: numbers back as numbers, for model_info."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def metadata(path: Path) -> dict[str, Any]:
    """The file's metadata, read by a vocabulary-only load (cached per file version); empty
    when it is not a GGUF llama.cpp can open."""
    try:
        return _cached(str(path), path.stat().st_mtime_ns)
    except Exception:  # llama.cpp's load error: not a model this can describe
        return {}


def parameter_size(meta: dict[str, Any]) -> str:
    """As Ollama writes it ("135M", "494.03M", "7.6B"): the size label when the file has
    one."""
    label = meta.get("general.size_label")
    return str(label) if label else ""


def quantization(meta: dict[str, Any]) -> str:
    return FILE_TYPES.get(meta.get("general.file_type", -1), "")
