"""`modelserve export-onnx SRC DST [--quantize int8]`: sentence-transformers dir -> onnx dir.

The result holds `model.onnx` (the transformer, returning token embeddings), the tokenizer
and the sentence-transformers pooling/normalize config, which is what the `onnx` runtime reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

COPIED = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
          "config.json", "modules.json", "sentence_bert_config.json",
          "config_sentence_transformers.json"]


def export_onnx(src: Path, dst: Path, quantize: str | None = None, opset: int = 17) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(src), device="cpu", local_files_only=True)
    transformer = model[0].auto_model.eval()
    sample = model.tokenizer(["an example sentence"], return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / "model.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}
    with torch.inference_mode():
        torch.onnx.export(transformer, tuple(sample[n] for n in names), str(target),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = dst / "model.fp32.onnx"
        target.replace(fp32)
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
        fp32.unlink()
    for name in COPIED:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for module in src.iterdir():
        if module.is_dir() and module.name[:1].isdigit() and "_" in module.name:
            shutil.copytree(module, dst / module.name, dirs_exist_ok=True)
    return dst
