"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelserve.api.errors import model_not_found
from modelserve.api.protocol import ModelCard, ModelList

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    loaded = request.app.state.registry.loaded()
    return ModelList(data=[ModelCard(id=name, created=rt.created, kind=rt.kind)
                           for name, rt in loaded.items()])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    runtime = request.app.state.registry.loaded().get(model_id)
    if runtime is None:
        raise model_not_found(model_id)
    return ModelCard(id=model_id, created=runtime.created, kind=runtime.kind)
