"""Which models are loaded, by name; requests are routed here by their `model` field."""

from __future__ import annotations

import logging
import threading

from modelserve.config import ModelSpec
from modelserve.runtimes.diffusion import DiffusionRuntime
from modelserve.runtimes.embeddings import EmbeddingRuntime
from modelserve.runtimes.llama_chat import LlamaChatRuntime

Runtime = LlamaChatRuntime | EmbeddingRuntime | DiffusionRuntime

logger = logging.getLogger(__name__)


class ModelNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class ModelRegistry:
    def __init__(self, specs: list[ModelSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self._loaded: dict[str, Runtime] = {}
        self._lock = threading.Lock()
        self.failed: dict[str, str] = {}

    def load(self, name: str) -> Runtime:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            spec = self.specs.get(name)
            if spec is None:
                raise ModelNotFound(name)
            runtime: Runtime = (LlamaChatRuntime(spec) if spec.kind == "chat"
                                else DiffusionRuntime(spec) if spec.kind == "images"
                                else EmbeddingRuntime(spec))
            self._loaded[name] = runtime
            return runtime

    def load_all(self) -> None:
        """Load every configured model; one that fails is logged and left out, not fatal."""
        for name in self.specs:
            try:
                self.load(name)
            except Exception as exc:
                logger.error("model %s failed to load: %s", name, exc)
                self.failed[name] = str(exc)

    def get(self, name: str) -> Runtime:
        runtime = self._loaded.get(name)
        if runtime is None:
            raise ModelNotFound(name)
        return runtime

    def loaded(self) -> dict[str, Runtime]:
        return dict(self._loaded)

    def close(self) -> None:
        with self._lock:
            for runtime in self._loaded.values():
                runtime.close()
            self._loaded.clear()
