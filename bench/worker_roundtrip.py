"""What one call to a model's worker costs the API process: sequential round trips, and 64 at
once, of the cheapest call there is (`stats`), against a real embeddings worker.

Runs on this checkout, or on another one's code with PYTHONPATH=OTHER/src (the handle's API
is the same), so the writer thread's cost per request is a before/after ratio:

    .venv/bin/python bench/worker_roundtrip.py
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/worker_roundtrip.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from pathlib import Path

from modelserve.config import ModelSpec
from modelserve.worker.handle import WorkerHandle


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(onnx: Path, calls: int, concurrency: int) -> None:
    spec = ModelSpec.model_validate({"name": "minilm", "kind": "embeddings",
                                     "runtime": "onnx", "source": str(onnx),
                                     "options": {"threads": 1}})
    worker = WorkerHandle(spec)
    await worker.start()
    try:
        for _ in range(200):  # warm up
            await worker.acall("stats")
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(calls):
            await worker.acall("stats")
        seq_wall, seq_cpu = time.perf_counter() - wall, cpu_seconds() - cpu

        async def client() -> None:
            for _ in range(calls // concurrency):
                await worker.acall("stats")

        wall, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        par_wall, par_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    finally:
        await asyncio.to_thread(worker.stop)
    import modelserve

    print(f"code: {Path(modelserve.__file__).parent}")
    print(f"sequential: {seq_wall / calls * 1e6:.1f} us/call wall, "
          f"{seq_cpu / calls * 1e6:.1f} us/call API-process CPU")
    print(f"{concurrency} at once: {par_wall / calls * 1e6:.1f} us/call wall, "
          f"{par_cpu / calls * 1e6:.1f} us/call API-process CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=Path(os.path.expanduser(
        "~/.cache/modelserve/all-minilm-l6-v2-onnx")))
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(measure(args.onnx, args.calls, args.concurrency))


if __name__ == "__main__":
    main()
