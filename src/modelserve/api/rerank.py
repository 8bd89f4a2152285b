"""POST /v1/rerank, with the /rerank and /v2/rerank paths other servers' clients use."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from modelserve.api import leases, pipeline
from modelserve.api.caching import CachePlan
from modelserve.api.errors import bad_request, queue_full
from modelserve.api.input_limits import check_inputs, check_texts
from modelserve.api.openapi import error_responses
from modelserve.api.protocol_rerank import (
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)
from modelserve.config_sections import InputLimits
from modelserve.failures import QueueFull
from modelserve.kinds.rerank import RERANK, RerankModel

router = APIRouter()


class RerankRoute(pipeline.Route[RerankRequest, RerankModel]):
    cache_route = "rerank"
    inputs: list[list[int]]
    tokens: int

    def check_limits(self, limits: InputLimits) -> None:
        check_inputs(len(self.req.documents), limits, "documents")
        check_texts([self.req.query], limits, "query")
        check_texts(self.req.texts(), limits, "documents")

    async def acquire(self) -> RerankModel:
        return await leases.acquire_kind(self.request, self.req.model, RERANK)

    async def count(self, runtime: RerankModel) -> tuple[int, int]:
        texts = self.req.texts()
        if len(texts) > runtime.max_documents:
            raise bad_request(f"{len(texts)} documents, over this model's maximum of "
                              f"{runtime.max_documents}.", param="documents",
                              code="too_many_inputs")
        self.inputs, self.tokens = await runtime.tokenize(self.req.query, texts)
        return self.tokens, 0

    def deterministic(self) -> bool:
        return True

    async def respond(self, runtime: RerankModel, plan: CachePlan) -> Response:
        try:
            scores = await runtime.score(self.inputs)
        except QueueFull:
            raise queue_full("documents") from None
        body = self.encode(scores).model_dump_json(exclude_none=True).encode()
        await plan.store(body)
        return Response(body, media_type="application/json")

    def encode(self, scores: list[float]) -> RerankResponse:
        req = self.req
        order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        documents = req.texts()
        results = [RerankResult(index=i, relevance_score=scores[i],
                                document=RerankDocument(text=documents[i])
                                if req.return_documents else None)
                   for i in order[: req.top_n or len(order)]]
        return RerankResponse(id=f"rerank-{uuid.uuid4().hex}", model=req.model,
                              results=results,
                              usage=RerankUsage(prompt_tokens=self.tokens,
                                                total_tokens=self.tokens))


@router.post("/v1/rerank", response_model=RerankResponse,
             responses=error_responses(404, 429, 503))
async def rerank(req: RerankRequest, request: Request) -> Response:
    """Documents ordered by relevance to the query (Cohere / Jina / vLLM shape)."""
    return await pipeline.serve(RerankRoute(req, request))


# The other paths clients of Cohere-compatible servers call (vLLM and llama-server take
# both); left out of the schema, which documents the one route.
router.add_api_route("/rerank", rerank, methods=["POST"], include_in_schema=False)
router.add_api_route("/v2/rerank", rerank, methods=["POST"], include_in_schema=False)
