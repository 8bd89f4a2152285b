"""`modelserve check-build`: can this machine run the llama.cpp that was built for it?

Prints what llama.cpp was compiled for and what this CPU offers, then loads a GGUF and decodes
one token in a child process, so that a fault in the library (SIGSEGV in AMX kernels, SIGILL
from instructions this CPU lacks) is reported with a way out instead of killing the caller.
The test suite runs it first, so a broken build fails in one clear line, not deep in a test.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.llama_build import AMX_OPTIONS, X86_OPTIONS, cpu_flags, is_x86

# llama.cpp's system-info name of each ggml build option ("GGML_AVX512_VNNI" -> "AVX512_VNNI").
_CPUINFO_NEEDS = {name.removeprefix("GGML_"): needs for name, needs in X86_OPTIONS.items()}
_CPUINFO_NEEDS |= {"SSE3": ("pni",), "SSSE3": ("ssse3",)}  # always on, reported all the same
_AMX_NAMES = {name.removeprefix("GGML_") for name in AMX_OPTIONS}
REBUILD_HINT = ("rebuild llama.cpp for this CPU: `make llama` (LLAMA_CPU=auto), or "
                "`make llama LLAMA_CPU=portable` for the AVX2 baseline")


@dataclass
class BuildReport:
    version: str
    compiled: list[str]
    cpu_lacks: list[str] = field(default_factory=list)  # compiled in, but not on this CPU
    amx: list[str] = field(default_factory=list)  # AMX kernels compiled in (they crash)
    decode: str = "not run"
    ok: bool = True


def compiled_report() -> BuildReport:
    import llama_cpp

    from modelserve.runtimes.llama_cpp import compiled_features

    on = sorted(name for name, value in compiled_features().items() if value)
    report = BuildReport(version=llama_cpp.__version__, compiled=on)
    report.amx = [name for name in on if name in _AMX_NAMES]
    if is_x86():
        flags = cpu_flags()
        report.cpu_lacks = [name for name in on
                            if not all(f in flags for f in _CPUINFO_NEEDS.get(name, ()))]
    report.ok = not report.amx and not report.cpu_lacks
    return report


def probe_decode(model: Path, timeout: float = 300) -> tuple[bool, str]:
    """Load `model` and decode one token in a child process; (ok, what happened)."""
    try:
        done = subprocess.run([sys.executable, "-m", "modelserve.build_check", "--decode-only",
                               str(model)], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return False, f"decoding one token of {model.name} took over {timeout:.0f}s"
    if done.returncode == 0:
        return True, f"decoded one token of {model.name}"
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return False, f"the child process died with {name} decoding one token of {model.name}"
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"decoding one token of {model.name} failed: {tail}"


def _decode_once(model_path: Path) -> None:
    from modelserve.runtimes.llama_cpp import LlamaContext, LlamaModel

    model = LlamaModel(model_path)
    ctx = LlamaContext(model, n_seq=1, ctx_per_seq=256, batch_size=32, threads=None)
    try:
        ctx.warm_up()
    finally:
        ctx.close()
        model.close()


def default_model(config: Path | None) -> Path | None:
    """The first llama.cpp model of the config whose file is here."""
    from modelserve.config import load_settings
    from modelserve.sources import ConfigError

    for spec in load_settings(config).models:
        if spec.runtime == "llama.cpp":
            try:
                return spec.resolve_source()
            except ConfigError:
                continue
    return None


def check_build(model: Path | None) -> BuildReport:
    report = compiled_report()
    if model is not None:
        decoded, report.decode = probe_decode(model)
        report.ok = report.ok and decoded
    return report


def describe(report: BuildReport) -> str:
    lines = [f"llama-cpp-python {report.version}, compiled for: {' '.join(report.compiled)}"]
    if report.amx:
        lines.append(f"AMX kernels compiled in ({', '.join(report.amx)}): they crash in this "
                     "llama.cpp; " + REBUILD_HINT)
    if report.cpu_lacks:
        lines.append(f"this CPU lacks {', '.join(report.cpu_lacks)}; " + REBUILD_HINT)
    lines.append(f"decode: {report.decode}")
    if not report.ok and not (report.amx or report.cpu_lacks):
        lines.append(REBUILD_HINT)
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    model = args.model or default_model(args.config)
    report = check_build(model)
    print(json.dumps(report.__dict__) if args.json else describe(report))
    sys.exit(0 if report.ok else 1)


def main() -> None:  # the child of probe_decode
    parser = argparse.ArgumentParser()
    parser.add_argument("--decode-only", type=Path, required=True)
    _decode_once(parser.parse_args().decode_only)


if __name__ == "__main__":
    main()
