"""The sentence-transformers directory layout: pooling, normalization, max length.

Both embeddings runtimes and `export-onnx` read the same files sentence-transformers writes:
`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]


class LayoutError(ValueError):
    """The directory is not a usable embeddings model."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise LayoutError(f"cannot read {path.name}: {exc}") from exc


@dataclass(frozen=True)
class EmbeddingLayout:
    pooling: str  # "mean" | "cls" | "lasttoken"
    normalize: bool
    max_seq_length: int

    @classmethod
    def read(cls, directory: Path) -> EmbeddingLayout:
        modules = _read_json(directory / "modules.json") or []
        types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
        pooling_dir = next((m.get("path") for m in modules if isinstance(m, dict)
                            and str(m.get("type", "")).endswith("Pooling")), "1_Pooling")
        pooling_cfg = _read_json(directory / str(pooling_dir) / "config.json") or {}
        pooling = "mean"
        if pooling_cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif pooling_cfg.get("pooling_mode_lasttoken"):
            pooling = "lasttoken"
        elif pooling_cfg and not pooling_cfg.get("pooling_mode_mean_tokens", True):
            raise LayoutError(f"unsupported pooling in {pooling_dir}/config.json")
        bert_cfg = _read_json(directory / "sentence_bert_config.json") or {}
        model_cfg = _read_json(directory / "config.json") or {}
        max_len = bert_cfg.get("max_seq_length") or model_cfg.get("max_position_embeddings")
        return cls(pooling=pooling, normalize=any(t.endswith("Normalize") for t in types),
                   max_seq_length=int(max_len or 512))

    def pool(self, hidden: Floats, mask: npt.NDArray[np.int64]) -> Floats:
        """[batch, tokens, dim] hidden states -> [batch, dim] sentence vectors."""
        if self.pooling == "cls":
            out = hidden[:, 0]
        elif self.pooling == "lasttoken":
            last = mask.sum(axis=1) - 1
            out = hidden[np.arange(hidden.shape[0]), last]
        else:
            weights = mask[:, :, None].astype(np.float32)
            out = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled: Floats = np.asarray(out, dtype=np.float32)
        return normalize(pooled) if self.normalize else pooled


def normalize(vectors: Floats) -> Floats:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: Floats = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return out


def pad_batch(batch: list[list[int]], pad_id: int = 0
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad token lists into ids and attention-mask arrays."""
    width = max(len(ids) for ids in batch)
    ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask
