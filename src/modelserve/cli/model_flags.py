"""`--model SOURCE` (repeatable, or MODELSERVE_MODEL) and the flags that shape it: models
served from their files alone, detected by modelserve.detect."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from modelserve.config import ModelSpec
from modelserve.detect import LLAMA_FLAGS, detect_source, spec_from_found, takes_llama_flags
from modelserve.sources import ConfigError


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", metavar="SOURCE",
                        help="serve this model file or directory (repeatable; kind, runtime "
                             "and options detected from its files; also hf:, pypi:, URLs); "
                             "default: MODELSERVE_MODEL (comma-separated)")
    parser.add_argument("--name", help="model name (one --model only; default: from the path)")
    parser.add_argument("--ctx", type=int, metavar="TOKENS",
                        help="llama.cpp context per sequence (default: the model's, "
                             "at most 4096)")
    parser.add_argument("--parallel", type=int, help="llama.cpp sequences decoded together")
    parser.add_argument("--gpu-layers", type=int, help="llama.cpp layers on a GPU; -1: all")


def model_sources(args: argparse.Namespace) -> list[str]:
    given: list[str] | None = getattr(args, "model", None)
    if given:
        return given
    from_env = os.environ.get("MODELSERVE_MODEL", "")
    return [s.strip() for s in from_env.split(",") if s.strip()]


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    """The specs of the `--model` sources; exits with a one-line message when one cannot be
    served (1) or the flags do not fit together (2, as argparse's usage errors).

    The llama.cpp flags go to the llama.cpp models among several; they are refused only when
    no model given takes them."""
    sources = model_sources(args)
    name: str | None = getattr(args, "name", None)
    flags = {"context_size": getattr(args, "ctx", None),
             "parallel": getattr(args, "parallel", None),
             "gpu_layers": getattr(args, "gpu_layers", None)}
    if not sources and (name is not None or any(v is not None for v in flags.values())):
        given = ["--name"] if name is not None else []
        given += [LLAMA_FLAGS[option] for option, value in flags.items() if value is not None]
        usage_error(f"{', '.join(given)}: only with --model")
    if name is not None and len(sources) > 1:
        usage_error(f"--name applies to a single --model ({len(sources)} given)")
    try:
        found = [detect_source(source) for source in sources]
        any_takes = any(takes_llama_flags(f) for f in found)
        return [spec_from_found(f, name=name, **(flags if takes_llama_flags(f) or not any_takes
                                                 else {}))
                for f in found]
    except ConfigError as exc:
        sys.exit(f"modelserve: {exc}")


def usage_error(message: str) -> NoReturn:
    print(f"modelserve: error: {message}", file=sys.stderr)
    sys.exit(2)
