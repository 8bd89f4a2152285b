"""An embeddings model as the API process holds it while the encoder runs in its worker.

Tokenizing stays here when the model's tokenizer is a `tokenizers` file (the ONNX layout), so
the route checks lengths without a round trip; the batching and the forward passes run in the
worker, which batches inputs from all requests as before.
"""

from __future__ import annotations

from typing import Any

from modelserve.config import ModelSpec
from modelserve.runtimes.st_layout import Floats
from modelserve.worker.handle import WorkerHandle


class EmbeddingsFront:
    def __init__(self, spec: ModelSpec, worker: WorkerHandle, info: dict[str, Any]) -> None:
        self.spec = spec
        self.worker = worker
        self.dimension: int = info["dimension"]
        self.n_vocab: int = info["n_vocab"]
        self.max_tokens: int = info["max_tokens"]
        self.max_inputs: int = info["max_inputs"]
        self.matryoshka: bool = info["matryoshka"]
        self.created: int = info["created"]
        self._tokenizer: Any = None
        if info["tokenizer_file"] is not None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(info["tokenizer_file"])
            self._tokenizer.no_truncation()
            self._tokenizer.no_padding()

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            tokens: list[int] = self.worker.call_blocking("tokenize", text)
            return tokens
        return list(self._tokenizer.encode(text).ids)

    async def embed(self, inputs: list[list[int]], dimensions: int | None = None
                    ) -> list[Floats]:
        vectors: list[Floats] = await self.worker.acall("embed", inputs, dimensions)
        return vectors

    def close(self) -> None:
        self.worker.stop()
