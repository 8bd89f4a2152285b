"""GET /v1/models and /v1/models/{id}: every model a request may name.

Unloaded models are listed too when they would load on first use (lazy loading is on), as
Ollama lists what it can run, and so are restarting ones (a request waits for them); models
that failed to load or cannot load now are left out.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelserve.api.errors import model_not_found
from modelserve.api.openapi import error_responses
from modelserve.api.protocol import ModelCard, ModelList
from modelserve.registry import ModelEntry, ModelRegistry, ModelState

router = APIRouter()


def _card(entry: ModelEntry) -> ModelCard:
    front = entry.current.front if entry.current else None
    # Known from the spec, so a client (the web console) sees it before the model loads.
    vision = getattr(entry.spec.options, "mmproj", None) is not None \
        if entry.spec.kind == "chat" else None
    return ModelCard(id=entry.spec.name, created=front.created if front else 0,
                     kind=entry.spec.kind, state=entry.state.value, vision=vision,
                     **(front.card() if front else {}))


def listed(registry: ModelRegistry, entry: ModelEntry) -> bool:
    if entry.state in (ModelState.READY, ModelState.LOADING, ModelState.RESTARTING):
        return True
    return entry.state is ModelState.UNLOADED and registry.policy.lazy_load


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    registry: ModelRegistry = request.app.state.registry
    return ModelList(data=[_card(e) for e in registry.entries.values() if listed(registry, e)])


@router.get("/v1/models/{model_id:path}", responses=error_responses(404))
async def get_model(model_id: str, request: Request) -> ModelCard:
    registry: ModelRegistry = request.app.state.registry
    entry = registry.entries.get(model_id)
    if entry is None or not listed(registry, entry):
        raise model_not_found(model_id)
    return _card(entry)
