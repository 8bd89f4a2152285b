"""`modelserve export-onnx SRC DST [--quantize int8]`: sentence-transformers dir -> onnx dir.

The result holds `model.onnx` (the transformer, returning token embeddings), the tokenizer
and the sentence-transformers pooling/normalize config, which is what the `onnx` runtime reads.

A BERT-style encoder is exported with eager attention and then fused by onnxruntime's
transformer optimizer (one Attention, SkipLayerNormalization and BiasGelu node per layer:
~46 nodes for MiniLM instead of ~670): 6-18 % less CPU a pass on one thread, most on small
batches and long texts (docs/benchmarks.md). The fused graph is kept only if it answers as
the plain export does on a sample; otherwise the plain one is.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

COPIED = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
          "config.json", "modules.json", "sentence_bert_config.json",
          "config_sentence_transformers.json"]


QUANTIZATIONS = ("int8", "int8-weights")
# Encoders whose attention onnxruntime's "bert" fusions recognise (once exported eager).
FUSABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert"}
FUSED_MAX_DIFF = 1e-4  # on the sample's token embeddings: the fusions' rounding is ~1e-6


def _quantize(src: Path, dst: Path, mode: str) -> None:
    """int8: onnxruntime's dynamic quantization (int8 weights and activations, fastest);
    int8-weights: 8-bit weights only, activations stay float (closest to fp32)."""
    if mode == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel weights and MatMul only: quantizing the embedding Gather and
        # per-tensor scales cost MiniLM several points of cosine similarity.
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    elif mode == "int8-weights":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=32,
                                         is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    else:
        raise ValueError(f"unknown quantization {mode!r}; choose from {QUANTIZATIONS}")


def export_onnx(src: Path, dst: Path, quantize: str | None = None, opset: int = 17) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(src), device="cpu", local_files_only=True)
    transformer: Any = model[0].auto_model
    transformer.eval()
    fuse = quantize is None and getattr(transformer.config, "model_type", None) in FUSABLE
    if fuse and hasattr(transformer, "set_attn_implementation"):
        # SDPA exports as a pattern the optimizer's attention fusion does not know.
        transformer.set_attn_implementation("eager")

    class TokenEmbeddings(torch.nn.Module):
        """Keyword call: positional order of `forward` differs across transformers versions."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    sample = model.tokenizer(["an example sentence"], return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / "model.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}
    with torch.inference_mode():
        torch.onnx.export(TokenEmbeddings(), tuple(sample[n] for n in names), str(target),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    if fuse:  # checked on two texts of different lengths: padding and its mask too
        pair = model.tokenizer(["an example sentence", "a second, rather longer example "
                                "sentence, padded to the same length"], padding=True,
                               return_tensors="pt")
        _fuse(target, transformer.config, {n: pair[n].numpy() for n in names})
    if quantize is not None:
        fp32 = dst / "model.fp32.onnx"
        target.replace(fp32)
        _quantize(fp32, target, quantize)
        fp32.unlink()
    for name in COPIED:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for module in src.iterdir():
        if module.is_dir() and module.name[:1].isdigit() and "_" in module.name:
            shutil.copytree(module, dst / module.name, dirs_exist_ok=True)
    return dst


def _fuse(target: Path, config: Any, sample: dict[str, Any]) -> None:
    """Replace `target` by its fused graph, if that answers the sample as `target` does."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.transformers.optimizer import optimize_model

    fused = target.with_name("model.fused.onnx")
    try:
        optimized = optimize_model(str(target), model_type="bert",
                                   num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size))
        optimized.save_model_to_file(str(fused))

        def run(path: Path) -> Any:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            wanted = {i.name for i in session.get_inputs()}
            return session.run(None, {k: v for k, v in sample.items() if k in wanted})[0]

        diff = float(np.abs(run(target) - run(fused)).max())
        if diff > FUSED_MAX_DIFF:
            logger.warning("the fused ONNX graph differs by %.2g; keeping the plain export", diff)
            return
        fused.replace(target)
    except Exception:  # an optimizer that cannot handle this model: the plain graph serves
        logger.exception("fusing the ONNX graph failed; keeping the plain export")
    finally:
        fused.unlink(missing_ok=True)
