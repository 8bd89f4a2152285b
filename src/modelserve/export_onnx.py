"""`modelserve export-onnx SRC DST [--quantize int8]`: sentence-transformers dir -> onnx dir.

The result holds `model.onnx` (the transformer, returning token embeddings), the tokenizer
and the sentence-transformers pooling/normalize config, which is what the `onnx` runtime reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

COPIED = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
          "config.json", "modules.json", "sentence_bert_config.json",
          "config_sentence_transformers.json"]


QUANTIZATIONS = ("int8", "int8-weights")


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
