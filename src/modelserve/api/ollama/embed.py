"""POST /api/embed and the legacy /api/embeddings: the embeddings pipeline (api/embeddings.py)
with Ollama's request and answer."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import Request, Response

from modelserve.api import pipeline
from modelserve.api.caching import CachePlan
from modelserve.api.embeddings import EmbeddingsRoute
from modelserve.api.ollama.common import ModelHold, ollama_router, resolve
from modelserve.api.ollama.options import check_known
from modelserve.api.ollama.protocol import EmbeddingsRequest, EmbedRequest, OllamaError
from modelserve.api.openapi import error_responses
from modelserve.api.protocol_embeddings import EmbeddingRequest
from modelserve.kinds.embeddings import EmbeddingsModel
from modelserve.runtimes.st_layout import Floats

router = ollama_router()

ERRORS = error_responses(400, 404, 429, 503, model=OllamaError)


class OllamaEmbedRoute(EmbeddingsRoute):
    """The embeddings route, answering in Ollama's shape (`legacy`: /api/embeddings' one
    `embedding`)."""

    def __init__(self, req: EmbeddingRequest, request: Request, model: str, hold: ModelHold,
                 legacy: bool) -> None:
        super().__init__(req, request)
        self.model = model  # as the client named it: Ollama echoes the name
        self.hold = hold
        self.legacy = legacy
        self.cache_route = "ollama_embeddings" if legacy else "ollama_embed"
        self.started = time.perf_counter_ns()

    def cache_body(self) -> dict[str, Any]:
        return {**super().cache_body(), "as": self.model}  # the name the answer echoes

    async def respond(self, runtime: EmbeddingsModel, plan: CachePlan) -> Response:
        self.hold.apply()  # the model is held now: a keep_alive of 0 cannot pull it away
        return await super().respond(runtime, plan)

    def encode(self, vectors: list[Floats]) -> bytes:
        if self.legacy:
            body: dict[str, Any] = {"embedding": vectors[0]}
        else:
            body = {"model": self.model, "embeddings": vectors,
                    "total_duration": time.perf_counter_ns() - self.started,
                    "load_duration": self.hold.load_ns(),
                    "prompt_eval_count": sum(len(t) for t in self.inputs)}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@router.post("/api/embed", responses=ERRORS)
async def embed(req: EmbedRequest, request: Request) -> Response:
    name = resolve(request, req.model)
    hold = ModelHold(request, name, req.keep_alive)
    check_known(req.options or {}, frozenset())  # no option changes an embedding
    inner = EmbeddingRequest(model=name, input=req.input, truncate=req.truncate,
                             dimensions=req.dimensions)
    return await pipeline.serve(OllamaEmbedRoute(inner, request, req.model, hold, False))


@router.post("/api/embeddings", responses=ERRORS)
async def embeddings(req: EmbeddingsRequest, request: Request) -> Response:
    name = resolve(request, req.model)
    hold = ModelHold(request, name, req.keep_alive)
    check_known(req.options or {}, frozenset())
    if not req.prompt:  # Ollama answers an empty prompt with an empty vector
        return Response(b'{"embedding":[]}', media_type="application/json")
    inner = EmbeddingRequest(model=name, input=req.prompt, truncate=True)
    return await pipeline.serve(OllamaEmbedRoute(inner, request, req.model, hold, True))
