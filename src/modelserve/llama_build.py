"""How llama.cpp (inside llama-cpp-python) is compiled: CPU features in, CMake flags out.

Stdlib only: the Makefile and the Dockerfiles run it with the system Python before any venv
exists, and the runtime imports it to report and check what the loaded library was built with.

Why not llama.cpp's defaults: ``GGML_NATIVE=ON`` compiles for ``-march=native``, which on a
Xeon with AMX turns on ggml's AMX matmul path; that path segfaulted (``ldtilecfg`` in
``ggml_backend_amx_mul_mat``) on the first chat request on this project's own machines. So
``auto`` sets every x86 feature the build machine has explicitly, and never AMX.

Why not runtime dispatch (``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``): llama-cpp-python
installs only a target named ``ggml-cpu`` (the variants are ``ggml-cpu-<name>`` and would not
ship in the wheel), its bindings never call ``ggml_backend_load_all()``, and ggml's variant list
includes ``sapphirerapids`` with AMX, which its CPUID scorer picks on exactly the CPUs that crash.

    python3 src/modelserve/llama_build.py cmake-args   # what `make` passes as CMAKE_ARGS
    python3 src/modelserve/llama_build.py key          # names the cached wheel for these flags
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import re
import subprocess
import sys
from pathlib import Path

# ggml option -> the /proc/cpuinfo flags it needs (GGML_AVX512 compiles for F, CD, VL, DQ, BW).
X86_OPTIONS: dict[str, tuple[str, ...]] = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_F16C": ("f16c",),
    "GGML_FMA": ("fma",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX2": ("avx2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
}
# Always off, whatever the CPU has: this llama.cpp's AMX path crashes (see the module doc).
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")

# Fixed feature sets for images built on one machine and run on others.
AVX2_BASELINE = ("GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA", "GGML_BMI2", "GGML_AVX2")
AVX512_SET = (*AVX2_BASELINE, "GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI",
              "GGML_AVX512_BF16")
CPU_MODES = ("auto", "portable", "avx512", "native")


def is_x86(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in {"x86_64", "amd64", "i686", "i386"}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def x86_options(enabled: tuple[str, ...] | set[str]) -> list[str]:
    args = ["-DGGML_NATIVE=OFF"]
    args += [f"-D{name}={'ON' if name in enabled else 'OFF'}" for name in X86_OPTIONS]
    args += [f"-D{name}=OFF" for name in AMX_OPTIONS]
    return args


def detected_options(flags: set[str]) -> set[str]:
    return {name for name, needs in X86_OPTIONS.items() if all(f in flags for f in needs)}


def cmake_args(cpu: str = "auto", *, machine: str | None = None,
               flags: set[str] | None = None) -> list[str]:
    """CMake flags for llama.cpp's CPU backend in the given mode.

    auto:     x86: every feature this machine has, explicitly, AMX never. Other
              architectures: llama.cpp's default (native; there is no AMX there).
    portable: for images that run on other machines. x86: the AVX2/FMA/F16C baseline
              (x86-64-v3: Intel Haswell and AMD Zen on); others: llama.cpp's generic build.
    avx512:   portable plus AVX-512 F/CD/VL/DQ/BW, VBMI, VNNI, BF16 (Ice Lake, Sapphire
              Rapids, Zen 4 and later); x86 only.
    native:   llama.cpp's GGML_NATIVE=ON, AMX included where the CPU has it: at your own risk.
    """
    if cpu not in CPU_MODES:
        raise ValueError(f"LLAMA_CPU must be one of {', '.join(CPU_MODES)}, not {cpu!r}")
    if cpu == "native":
        return ["-DGGML_NATIVE=ON"]
    if not is_x86(machine):
        if cpu == "avx512":
            raise ValueError("LLAMA_CPU=avx512 is an x86-64 feature set; this is "
                             f"{machine or platform.machine()}")
        return ["-DGGML_NATIVE=OFF"] if cpu == "portable" else []
    if cpu == "portable":
        return x86_options(set(AVX2_BASELINE))
    if cpu == "avx512":
        return x86_options(set(AVX512_SET))
    return x86_options(detected_options(cpu_flags() if flags is None else flags))


def pinned_version(pyproject: Path) -> str:
    """The llama-cpp-python version pyproject.toml pins (one place says which version we run)."""
    import tomllib

    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.fullmatch(r"llama-cpp-python==([\w.]+)", dep.replace(" ", ""))
        if match:
            return match.group(1)
    raise SystemExit("pyproject.toml pins no llama-cpp-python==VERSION")


def compiler_id() -> str:
    try:
        out = subprocess.run(["cc", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "no-cc"
    return out.stdout.splitlines()[0] if out.stdout else "unknown-cc"


def wheel_key(version: str, args: list[str]) -> str:
    """Names a built wheel by everything that changes its machine code, so new flags rebuild."""
    text = "\n".join([version, platform.machine(), compiler_id(), *args])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cmake-args", "key", "version"])
    parser.add_argument("--cpu", default="auto", help=f"one of {', '.join(CPU_MODES)}")
    parser.add_argument("--extra", default="", help="more CMake flags, e.g. -DGGML_CUDA=ON")
    parser.add_argument("--pyproject", type=Path,
                        default=Path(__file__).resolve().parents[2] / "pyproject.toml")
    opts = parser.parse_args(argv)
    try:
        args = cmake_args(opts.cpu) + opts.extra.split()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if opts.what == "cmake-args":
        print(" ".join(args))
    elif opts.what == "version":
        print(pinned_version(opts.pyproject))
    else:
        print(wheel_key(pinned_version(opts.pyproject), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
