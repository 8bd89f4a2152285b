"""Images benchmark: one text-to-image request through the server vs the same pipeline called
in-process on the same directory, same size, steps and seed, rounds alternating.

Without `--url`, a `modelserve serve` subprocess is started on a free port for the directory;
without `--model-dir`, a tiny random-weight pipeline is built first (see tiny_diffusion).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelserve.loadgen.server import serve_config

PROMPT = "a lighthouse on a cliff at sunset, oil painting"


@dataclass
class ImageBenchResult:
    size: str
    steps: int
    rounds: int
    server_ms: float  # request to response, b64_json PNG, median
    direct_ms: float  # pipeline call only, median
    direct_png_ms: float  # pipeline call + PNG encode, median
    overhead_pct: float  # server vs pipeline call
    overhead_vs_png_pct: float  # server vs pipeline call + PNG
    # Best-of-rounds: on a shared, noisy machine the minimum is the steadier estimate of what
    # the server adds.
    server_min_ms: float
    direct_min_ms: float
    overhead_min_pct: float
    # Median of each round's server / pipeline ratio: the pair ran back to back, so load from
    # elsewhere mostly hits both halves of a pair alike.
    overhead_paired_pct: float
    server_rounds_ms: list[float]
    direct_rounds_ms: list[float]


@contextmanager
def serve(model_dir: Path, model: str, threads: int | None, isolation: str = "process"
          ) -> Iterator[str]:
    """A `modelserve serve` subprocess for the directory; yields its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "models.yaml"
        options: dict[str, Any] = {"max_steps": 1000, "max_width": 2048, "max_height": 2048}
        if threads:
            options["threads"] = threads
        spec = {"name": model, "kind": "images", "source": str(model_dir), "options": options}
        config.write_text(yaml.safe_dump({"server": {"lifecycle": {"isolation": isolation}},
                                          "models": [spec]}))
        with serve_config(config) as url:
            yield url


def direct_caller(model_dir: Path, threads: int | None) -> Callable[[int, int, int, int],
                                                                    tuple[float, float]]:
    """Load the pipeline in this process as the runtime does; the callable returns the
    seconds of the pipeline call and of call + PNG encode."""
    import torch
    from diffusers import AutoPipelineForText2Image

    from modelserve.runtimes.diffusion import encode_image

    if threads:
        torch.set_num_threads(threads)
    pipe = AutoPipelineForText2Image.from_pretrained(str(model_dir), dtype=torch.float32,
                                                     local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def call(width: int, height: int, steps: int, seed: int) -> tuple[float, float]:
        started = time.perf_counter()
        with torch.inference_mode():
            image = pipe(PROMPT, width=width, height=height, num_inference_steps=steps,
                         generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        called = time.perf_counter()
        encode_image(image, "png")
        return called - started, time.perf_counter() - started

    return call


def server_call(client: httpx.Client, model: str, size: str, steps: int, seed: int) -> float:
    body = {"model": model, "prompt": PROMPT, "size": size, "num_inference_steps": steps,
            "seed": seed, "response_format": "b64_json"}
    started = time.perf_counter()
    resp = client.post("/v1/images/generations", json=body)
    resp.raise_for_status()
    assert resp.json()["data"][0]["b64_json"]
    return time.perf_counter() - started


def measure(url: str, model: str, model_dir: Path, size: str, steps: int, rounds: int,
            threads: int | None) -> ImageBenchResult:
    width, height = (int(v) for v in size.lower().split("x"))
    direct = direct_caller(model_dir, threads)
    server: list[float] = []
    calls: list[tuple[float, float]] = []
    with httpx.Client(base_url=url, timeout=600) as client:
        server_call(client, model, size, steps, 0)  # warm-up both sides
        direct(width, height, steps, 0)
        for i in range(rounds):
            # Alternate which goes first, so drift on a noisy machine hits both alike.
            if i % 2:
                calls.append(direct(width, height, steps, i + 1))
                server.append(server_call(client, model, size, steps, i + 1))
            else:
                server.append(server_call(client, model, size, steps, i + 1))
                calls.append(direct(width, height, steps, i + 1))
    server_ms = statistics.median(server) * 1000
    direct_ms = statistics.median(c[0] for c in calls) * 1000
    png_ms = statistics.median(c[1] for c in calls) * 1000
    server_min, direct_min = min(server) * 1000, min(c[0] for c in calls) * 1000
    return ImageBenchResult(
        size, steps, rounds, round(server_ms, 1), round(direct_ms, 1), round(png_ms, 1),
        round((server_ms / direct_ms - 1) * 100, 2), round((server_ms / png_ms - 1) * 100, 2),
        round(server_min, 1), round(direct_min, 1), round((server_min / direct_min - 1) * 100, 2),
        round((statistics.median(s / c[0] for s, c in zip(server, calls, strict=True)) - 1)
              * 100, 2),
        [round(s * 1000, 1) for s in server], [round(c[0] * 1000, 1) for c in calls])


def markdown(r: ImageBenchResult) -> str:
    return "\n".join([
        "| size | steps | rounds | server p50 ms | pipeline p50 ms | pipeline+PNG p50 ms "
        "| overhead vs pipeline | vs pipeline+PNG | server min ms | pipeline min ms "
        "| overhead, min vs min | overhead, paired median |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r.size} | {r.steps} | {r.rounds} | {r.server_ms} | {r.direct_ms} "
        f"| {r.direct_png_ms} | {r.overhead_pct:+.2f} % | {r.overhead_vs_png_pct:+.2f} % "
        f"| {r.server_min_ms} | {r.direct_min_ms} | {r.overhead_min_pct:+.2f} % "
        f"| {r.overhead_paired_pct:+.2f} % |"])


def run_images_bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from modelserve.loadgen.tiny_diffusion import build_tiny_pipeline

            model_dir = build_tiny_pipeline(Path(tmp) / "tiny-sd", width=args.tiny_width)
        if args.url:
            result = measure(args.url.rstrip("/"), args.model, model_dir, args.size,
                             args.steps, args.rounds, args.threads)
        else:
            with serve(model_dir, args.model, args.threads, args.isolation) as url:
                result = measure(url, args.model, model_dir, args.size, args.steps,
                                 args.rounds, args.threads)
    print(json.dumps(asdict(result)), flush=True)
    if args.json_out:
        with open(args.json_out, "a") as fh:
            fh.write(json.dumps(asdict(result)) + "\n")
    print(markdown(result))
