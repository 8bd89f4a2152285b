"""A GGUF file's scalar metadata (`general.architecture`, `<arch>.context_length`, the chat
template, ...), read from its header without loading it: what Ollama reports as a model's
`model_info` and `details`. Arrays (the vocabulary) are skipped, not kept."""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Any, BinaryIO

_MAGIC = b"GGUF"
# GGUF value types: struct formats of the fixed-size ones; 8 is a string, 9 an array.
_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# llama.cpp's file types (general.file_type), as Ollama names quantization levels.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
              15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
              20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
              25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS",
              31: "IQ1_M", 32: "BF16"}


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    return bytes(f.read(_read(f, "<Q"))).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _FIXED:
        return _read(f, _FIXED[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:  # skipped: only its length is kept
        item, count = _read(f, "<I"), _read(f, "<Q")
        if item in _FIXED:
            f.seek(struct.calcsize(_FIXED[item]) * count, 1)
        else:
            for _ in range(count):
                _value(f, item)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")


@functools.lru_cache(maxsize=32)
def _cached(path: str, mtime_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with open(path, "rb") as f:
        if f.read(4) != _MAGIC:
            return out
        version = _read(f, "<I")
        if version < 2:
            return out
        _read(f, "<Q")  # tensors
        for _ in range(_read(f, "<Q")):
            key = _string(f)
            value = _value(f, _read(f, "<I"))
            if value is not None:
                out[key] = value
    return out


def metadata(path: Path) -> dict[str, Any]:
    """The file's scalar metadata; empty when it is not a GGUF (or cannot be read)."""
    try:
        return _cached(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError):
        return {}


def parameter_size(meta: dict[str, Any]) -> str:
    """As Ollama writes it ("135M", "494.03M", "7.6B"): the size label when the file has
    one."""
    label = meta.get("general.size_label")
    return str(label) if label else ""


def quantization(meta: dict[str, Any]) -> str:
    return FILE_TYPES.get(meta.get("general.file_type", -1), "")
