"""/admin: list, load and unload models at runtime; Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from modelserve.api.errors import APIError, bad_request, model_not_found, validation_message
from modelserve.api.openapi import METRICS_RESPONSES, error_responses
from modelserve.api.protocol import UnloadRequest
from modelserve.config import ModelSpec
from modelserve.kinds import KINDS
from modelserve.lifecycle import Lifecycle
from modelserve.model_files import under_roots
from modelserve.registry import ModelRegistry, ModelState
from modelserve.sources import ConfigError, PathSource
from modelserve.worker.memory import available_bytes

router = APIRouter()

# The load body is read by hand (a configured model's name, or a whole spec checked against
# the model roots), so FastAPI cannot see it: it is described here for the schema.
LOAD_BODY = {"required": True, "content": {"application/json": {"schema": {"oneOf": [
    {"type": "object", "required": ["name"], "additionalProperties": False,
     "properties": {"name": {"type": "string", "minLength": 1,
                             "description": "a model from the configuration"}}},
    {"type": "object", "required": ["name", "source"], "additionalProperties": False,
     "description": "a new model: a spec as in the configuration's `models:` list",
     "properties": {"kind": {"type": "string"}, "runtime": {"type": "string"},
                    "options": {"type": "object"}, "pinned": {"type": "boolean"},
                    "preload": {"type": "boolean"},
                    "keep_alive_seconds": {"type": ["number", "null"]},
                    "name": {"type": "string", "minLength": 1, "maxLength": 128,
                             "pattern": "^[A-Za-z0-9._:/-]+$"},
                    "source": {"anyOf": [
                        {"type": "string", "minLength": 1},
                        {"type": "object", "required": ["package", "file"],
                         "additionalProperties": False,
                         "properties": {"package": {"type": "string"},
                                        "file": {"type": "string"}}},
                        {"type": "object", "required": ["path"], "additionalProperties": False,
                         "properties": {"path": {"type": "string"}}}]}}}]}}}}


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def _lifecycle(request: Request) -> Lifecycle:
    lifecycle: Lifecycle = request.app.state.lifecycle
    return lifecycle


@router.get("/admin/models")
async def list_models(request: Request, stats: bool = False) -> dict[str, Any]:
    """Every model; `stats=true` first asks the workers for fresh engine stats (KV use; up
    to 0.5 s), else entries carry what the last /metrics scrape or stats refresh read."""
    registry = _registry(request)
    cpu = _lifecycle(request).cpu
    policy = registry.policy
    if stats:
        await registry.refresh_stats()
    return {"object": "list",
            "data": [{**e.describe(policy),
                      "cpu": cpu.of(e.spec.name, e.current.worker) if e.current else None}
                     for e in registry.entries.values()],
            "memory_in_use_bytes": registry.memory_in_use(),
            "host_memory_available_bytes": available_bytes(),
            "policy": policy.model_dump(),
            "cpu": cpu.describe()}


def _spec_from(body: Any, registry: ModelRegistry) -> ModelSpec:
    """A configured model by name, or a full spec (checked against the model roots)."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise bad_request("The body must be a JSON object with a model 'name' (and, for a new "
                          "model, its spec: kind, runtime, source, options).", param="name")
    if set(body) == {"name"}:
        entry = registry.entries.get(body["name"])
        if entry is None:
            raise model_not_found(body["name"])
        return entry.spec
    try:
        spec = ModelSpec.model_validate(body)
    except ValidationError as exc:
        field, message = validation_message(exc.errors())
        raise bad_request(f"Invalid model spec: {message}", param=field) from None
    sources = [("source", spec.source), *KINDS[spec.kind].extra_sources(spec.options)]
    for param, source in sources:
        if not isinstance(source, PathSource):
            continue
        # Roots first, so a refused path tells nothing about what exists outside them.
        if not under_roots(source.expanded(), registry.policy.model_roots):
            raise APIError(403, "The model file is outside the configured model roots "
                           "(lifecycle.model_roots).", type="permission_error",
                           param=param, code="path_not_allowed")
        try:
            source.resolve()
        except ConfigError as exc:
            raise bad_request(str(exc), param=param) from None
    return spec


@router.post("/admin/models/load", status_code=202, openapi_extra={"requestBody": LOAD_BODY},
             responses={200: {"description": "Loaded (with wait=true)"},
                        **error_responses(403, 404, 422)})
async def load_model(request: Request, wait: bool = False) -> JSONResponse:
    registry = _registry(request)
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("We could not parse the JSON body of your request.") from None
    spec = _spec_from(body, registry)
    entry = registry.add(spec)
    task = _lifecycle(request).start_load(spec.name)
    if not wait:
        return JSONResponse(entry.describe(registry.policy), status_code=202)
    await asyncio.shield(task)
    if entry.state is not ModelState.READY or entry.error is not None:
        raise APIError(422, f"The model '{spec.name}' failed to load: {entry.error}",
                       param="name", code="model_load_failed")
    return JSONResponse(entry.describe(registry.policy), status_code=200)


@router.post("/admin/models/unload", status_code=202,
             responses={200: {"description": "Unloaded (with wait=true)"},
                        **error_responses(404)})
async def unload_model(req: UnloadRequest, request: Request, wait: bool = False
                       ) -> JSONResponse:
    registry = _registry(request)
    entry = registry.entries.get(req.name)
    if entry is None:
        raise model_not_found(req.name)
    task = registry.in_background(_lifecycle(request).unload(req.name))
    if wait:
        await asyncio.shield(task)
        return JSONResponse(entry.describe(registry.policy), status_code=200)
    await asyncio.sleep(0)  # let the unload mark the model before we describe it
    return JSONResponse(entry.describe(registry.policy), status_code=202)


@router.get("/admin/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
async def metrics(request: Request) -> Response:
    await request.app.state.registry.refresh_stats()
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
