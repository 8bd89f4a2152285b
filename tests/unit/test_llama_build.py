"""llama.cpp build flags: CPU features in, CMake flags out, never AMX; and what was built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelserve import llama_build
from modelserve.build_check import BuildReport, describe, probe_decode

ROOT = Path(__file__).resolve().parents[2]
SAPPHIRE_RAPIDS = ("flags : fpu sse4_2 avx f16c fma bmi2 avx2 avx_vnni avx512f avx512cd avx512vl "
                   "avx512dq avx512bw avx512vbmi avx512_vnni avx512_bf16 amx_tile amx_int8 "
                   "amx_bf16\n")
HASWELL = "processor : 0\nflags : fpu sse4_2 avx f16c fma bmi2 avx2\n"


def options(args: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("-D").split("=", 1) for arg in args)


def test_auto_sets_every_feature_of_an_amx_cpu_but_amx() -> None:
    flags = llama_build.cpu_flags(SAPPHIRE_RAPIDS)
    opts = options(llama_build.cmake_args("auto", machine="x86_64", flags=flags))
    assert opts["GGML_NATIVE"] == "OFF"
    assert all(opts[name] == "ON" for name in llama_build.X86_OPTIONS)
    assert all(opts[name] == "OFF" for name in llama_build.AMX_OPTIONS)


def test_auto_leaves_out_what_the_cpu_lacks() -> None:
    opts = options(llama_build.cmake_args("auto", machine="x86_64",
                                          flags=llama_build.cpu_flags(HASWELL)))
    assert opts["GGML_AVX2"] == opts["GGML_FMA"] == opts["GGML_F16C"] == "ON"
    assert opts["GGML_AVX512"] == opts["GGML_AVX_VNNI"] == opts["GGML_AVX512_VNNI"] == "OFF"
    # AVX-512 F alone is not enough: ggml's GGML_AVX512 compiles for F, CD, VL, DQ and BW.
    partial = llama_build.cpu_flags("flags : avx2 avx512f avx512cd\n")
    assert "GGML_AVX512" not in llama_build.detected_options(partial)


def test_fixed_sets_do_not_depend_on_the_build_machine() -> None:
    portable = options(llama_build.cmake_args("portable", machine="x86_64", flags=set()))
    assert {k for k, v in portable.items() if v == "ON"} == set(llama_build.AVX2_BASELINE)
    avx512 = options(llama_build.cmake_args("avx512", machine="x86_64", flags=set()))
    assert avx512["GGML_AVX512_VNNI"] == "ON" and avx512["GGML_AMX_INT8"] == "OFF"
    assert llama_build.cmake_args("native") == ["-DGGML_NATIVE=ON"]


def test_arm64_keeps_llamas_own_choice() -> None:
    assert llama_build.cmake_args("auto", machine="aarch64") == []
    assert llama_build.cmake_args("portable", machine="aarch64") == ["-DGGML_NATIVE=OFF"]
    with pytest.raises(ValueError, match="x86-64"):
        llama_build.cmake_args("avx512", machine="aarch64")
    with pytest.raises(ValueError, match="LLAMA_CPU must be one of"):
        llama_build.cmake_args("fastest")


def test_the_wheel_key_follows_flags_and_the_pinned_version() -> None:
    version = llama_build.pinned_version(ROOT / "pyproject.toml")
    assert version.count(".") == 2
    auto = llama_build.wheel_key(version, ["-DGGML_AVX512=ON"])
    assert auto == llama_build.wheel_key(version, ["-DGGML_AVX512=ON"])
    assert auto != llama_build.wheel_key(version, ["-DGGML_NATIVE=ON"])
    assert auto != llama_build.wheel_key("0.0.1", ["-DGGML_AVX512=ON"])


def test_the_script_is_what_make_and_docker_call() -> None:
    script = ROOT / "src/modelserve/llama_build.py"
    run = [sys.executable, str(script)]
    args = subprocess.run([*run, "cmake-args", "--cpu", "portable", "--extra=-DGGML_CUDA=ON"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert args[-1] == "-DGGML_CUDA=ON" and "-DGGML_AMX_INT8=OFF" in args
    key = subprocess.run([*run, "key"], capture_output=True, text=True, check=True).stdout
    assert len(key.strip()) == 16
    bad = subprocess.run([*run, "key", "--cpu", "fastest"], capture_output=True, text=True)
    assert bad.returncode == 2 and "LLAMA_CPU must be one of" in bad.stderr


def test_no_amx_kernel_is_compiled_in_and_nothing_this_cpu_lacks() -> None:
    """The library this venv loads: built without AMX, for features this CPU has."""
    from modelserve.build_check import compiled_report

    report = compiled_report()
    assert report.compiled, "llama.cpp reported no CPU features"
    assert report.amx == [], f"AMX kernels compiled in: {report.amx}"
    assert report.cpu_lacks == [], f"compiled for features this CPU lacks: {report.cpu_lacks}"


def test_a_child_that_dies_is_reported_with_its_signal(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crashing))
    ok, detail = probe_decode(tmp_path / "model.gguf")
    assert not ok and "SIGSEGV" in detail and "model.gguf" in detail


def test_a_file_that_is_no_gguf_fails_the_probe_without_a_crash(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    ok, detail = probe_decode(bogus)
    assert not ok and "could not load" in detail


def test_the_report_says_how_to_rebuild() -> None:
    bad = BuildReport(version="0", compiled=["AVX2", "AMX_INT8"], amx=["AMX_INT8"], ok=False)
    text = describe(bad)
    assert "AMX kernels compiled in (AMX_INT8)" in text and "make llama" in text
    assert text.endswith("FAILED")
    assert describe(BuildReport(version="0", compiled=["AVX2"])).endswith("OK")
