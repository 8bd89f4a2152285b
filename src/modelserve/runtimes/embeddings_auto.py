"""`runtime: auto` for embeddings: which backend runs a model directory, by a measured rule.

(On a CPU with bf16 units an exported sentence-transformers directory keeps its torch half
too: EmbeddingRuntime then runs each pass on ONNX or torch, runtimes/embeddings_split.py.
This module decides only whether there is an ONNX export and where.)

The rule (docs/benchmarks.md, "Embeddings"): the fp32 export gives
`SentenceTransformer.encode`'s vectors to 1e-7 and, with 512-token passes, runs 1.3-1.7x
torch fp32 on short texts on an Intel Xeon (0.9x on long ones) and 1.5-2.2x at every length
on an AMD EPYC; on CPUs with bf16 units the large passes go to torch in bf16 on top of it
(runtimes/embeddings_split.py). So:

- a directory with `model.onnx` (made by `modelserve export-onnx`) runs on `onnx`;
- a sentence-transformers directory of a BERT-style encoder (the family measured) is exported
  once into the cache (`~/.cache/modelserve/onnx-auto/<revision>`, `MODEL_CACHE` moves it) and
  runs on `onnx`; the key is the directory's files (names, sizes, mtimes), so a new revision
  of the weights gets a new export;
- anything else (another architecture, a failed export) runs on `sentence-transformers`,
  which loads any sentence-transformers directory.

No timing happens at load: a calibration on a shared, busy machine would pick differently
from one start to the next, so the rule was measured on two CPUs instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

ONNX = "onnx"
ST = "sentence-transformers"
# config.json model_type of the BERT-style encoders (MiniLM is one) the rule was measured on;
# exporting a 7B decoder-based embedder at load is not what `auto` should do.
BERT_LIKE = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "camembert"}


# Part of the cache key: a new export (2: fused attention) replaces what an older one left.
EXPORT_FORMAT = 2


def cache_root() -> Path:
    return Path(os.environ.get("MODEL_CACHE", "~/.cache/modelserve")).expanduser() / "onnx-auto"


def revision(directory: Path) -> str:
    """A key that changes when any file of the model directory does (size or mtime), without
    reading gigabytes of weights at every load."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}\0{directory.resolve()}".encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(directory)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()[:20]


def exportable(directory: Path) -> bool:
    """A sentence-transformers directory of a BERT-style encoder."""
    if not (directory / "modules.json").is_file() or not (directory / "tokenizer.json").is_file():
        return False
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") in BERT_LIKE


def choose(directory: Path) -> tuple[str, Path]:
    """The backend `auto` runs `directory` on, and the directory that backend loads."""
    if (directory / "model.onnx").is_file():
        return ONNX, directory
    if not exportable(directory):
        return ST, directory
    target = cache_root() / revision(directory)
    if (target / "model.onnx").is_file():
        return ONNX, target
    try:
        _export(directory, target)
    except Exception:  # any failure of torch.onnx or the optimizer: torch still serves it
        logger.exception("ONNX export of %s failed; serving it on sentence-transformers",
                         directory)
        return ST, directory
    return ONNX, target


def _export(directory: Path, target: Path) -> None:
    from modelserve.export_onnx import export_onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    # Export beside the target and rename: two workers loading the same model at once must
    # never see (or load) a half-written directory.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        export_onnx(directory, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its export is the same
            if not (target / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s for runtime auto", directory, target)
