"""The served /openapi.json, made to say what the server really answers.

FastAPI documents every validation failure as a 422 with its own `detail` list; this server
answers those with a 400 in OpenAI's error envelope (api/errors.py), and its middlewares
(auth, body limit, drain) add statuses no route declares. Clients generated from the schema
(and schemathesis) trust it, so the cross-cutting answers are written in here, in one pass
over every operation, and the route-specific ones on the routes with `error_responses`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from modelserve.api.drain import ALWAYS_SERVED
from modelserve.api.protocol import ErrorResponse
from modelserve.config_sections import InputLimits

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
DESCRIPTIONS = {
    400: "Invalid request: a field that fails validation (`param` names it), malformed JSON",
    401: "No API key, or an unknown one",
    403: "The API key lacks the scope this route needs",
    404: "Not found (e.g. `model_not_found`)",
    408: "The body or the request took longer than the server's limits",
    413: "The body is larger than `max_request_bytes`",
    422: "The model failed to load (`model_load_failed`)",
    429: "Rate limited or the model's queue is full (see `Retry-After`)",
    502: "A remote the server fetched from failed (a pull's download or checksum)",
    503: "The model or the server is not available now (see `Retry-After`)",
    507: "No space left on the server's disk (a pull)",
}
# Prometheus' text exposition format, as /metrics and /admin/metrics send it.
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus metrics (text exposition format)",
          "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}}


# Surfaces whose errors have another shape, by their routes' path prefix (as api/errors.py's
# SHAPES): the schema of their error body, named as in components.
ERROR_MODELS: dict[str, tuple[str, type[BaseModel]]] = {}


def error_responses(*statuses: int, model: type[BaseModel] = ErrorResponse
                    ) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers these statuses itself, in the error envelope
    (`model`: another surface's)."""
    return {status: {"model": model, "description": DESCRIPTIONS[status]}
            for status in statuses}


def _error(status: int, path: str) -> dict[str, Any]:
    name = next((name for prefix, (name, _) in ERROR_MODELS.items() if path.startswith(prefix)),
                "ErrorResponse")
    return {"description": DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def form_schema(model: type[BaseModel], files: dict[str, bool]) -> dict[str, Any]:
    """A multipart/form-data request body: the model's fields plus the named files (name:
    required). A form field is text, never null, so the null branches are left out."""
    schema = model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
        prop = {k: v for k, v in prop.items() if k != "anyOf" and not (
            k == "default" and v is None)}
        properties[name] = {**prop, **branches[0]} if len(branches) == 1 else (
            {**prop, "anyOf": branches} if branches else prop)
    binary = {"type": "string", "format": "binary"}
    schema["properties"] = {**properties, **{name: binary for name in files}}
    schema["required"] = [*schema.get("required", []), *(n for n, req in files.items() if req)]
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _integer(prop: dict[str, Any]) -> dict[str, Any]:
    """The integer branch of an `int | None` property (or the property itself)."""
    return next((b for b in prop.get("anyOf", []) if b.get("type") == "integer"), prop)


def _apply_limits(schemas: dict[str, Any], limits: InputLimits) -> None:
    """The server's configured input limits (api/input_limits.py refuses past them with a
    400) as bounds in the request schemas, so a client knows them before it is refused."""
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        props = schemas.get(name, {}).get("properties", {})
        if "n" in props:
            props["n"]["maximum"] = limits.max_n
        for field in ("max_tokens", "max_completion_tokens"):
            if limits.max_tokens is not None and field in props:
                _integer(props[field])["maximum"] = limits.max_tokens
    chat = schemas.get("ChatCompletionRequest", {}).get("properties", {})
    if "messages" in chat:
        chat["messages"]["maxItems"] = limits.max_messages
    content = schemas.get("ChatMessage", {}).get("properties", {}).get("content", {})
    for branch in content.get("anyOf", []):
        if branch.get("type") == "string":
            branch["maxLength"] = limits.max_message_chars
    texts = [*schemas.get("CompletionRequest", {}).get("properties", {})
             .get("prompt", {}).get("anyOf", []),
             *schemas.get("EmbeddingRequest", {}).get("properties", {})
             .get("input", {}).get("anyOf", [])]
    for branch in texts:
        if branch.get("type") == "string":
            branch["maxLength"] = limits.max_message_chars
        elif branch.get("items", {}).get("type") == "string":
            branch["items"]["maxLength"] = limits.max_message_chars
    embeddings = schemas.get("EmbeddingRequest", {}).get("properties", {}).get("input", {})
    for branch in embeddings.get("anyOf", []):
        if branch.get("type") == "array" and branch.get("items", {}).get("type") != "integer":
            branch["maxItems"] = limits.max_embedding_inputs


def install_openapi(app: FastAPI, *, auth: bool, metrics_scope: str,
                    limits: InputLimits) -> None:
    """Replace `app.openapi` with one that documents what the middlewares and the error
    handlers answer. `auth` (API keys configured) and `metrics_scope` decide 401/403/429:
    the schema describes this server as configured, so an open server documents no auth;
    `limits` become bounds in the request schemas."""

    def needed_scope(path: str) -> str | None:  # mirrors api/auth.py's Authenticator
        if path in ("/health", "/ready"):
            return None
        if path == "/metrics":
            return None if metrics_scope == "public" else metrics_scope
        return "admin" if path == "/admin" or path.startswith("/admin/") else "user"

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        envelope = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(envelope.pop("$defs", {}))
        schemas["ErrorResponse"] = envelope
        for name, model in ERROR_MODELS.values():
            shape = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(shape.pop("$defs", {}))
            schemas[name] = shape
        # FastAPI's own validation error shapes: nothing here ever answers with them.
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        _apply_limits(schemas, limits)
        if auth:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, item in schema.get("paths", {}).items():
            scope = needed_scope(path) if auth else None
            for method, op in item.items():
                _document(op, method, path, scope)
        app.openapi_schema = schema
        return schema

    setattr(app, "openapi", build)  # noqa: B010 (mypy refuses assigning to a method)


def _document(op: dict[str, Any], method: str, path: str, scope: str | None) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    validated = responses.pop("422", None)
    if validated is not None and "HTTPValidationError" not in str(validated):
        responses["422"] = validated  # a route's own 422 (admin load), already an envelope
    adds: list[int] = []
    # Validation errors are 400s (a string path parameter cannot fail one); bodies are
    # limited in size and in arrival time.
    checked = any(p.get("in") != "path" for p in op.get("parameters", []))
    if method == "post" or (validated is not None and checked):
        adds.append(400)
    if method == "post":
        adds += [408, 413]
    if scope is not None:
        op["security"] = [{"bearer": []}]
        adds.append(401)
        if scope == "admin":
            adds.append(403)
        else:  # per-key rate limits, or their storage down with fail_closed
            adds += [429, 503]
    if path not in ALWAYS_SERVED:  # refused while the server drains
        adds.append(503)
    for status in adds:
        responses.setdefault(str(status), _error(status, path))



def streamed_or(model: type[BaseModel]) -> dict[str, Any]:
    """The 200 of a route that answers JSON, or server-sent events when `stream` is true."""
    return {"model": model, "description": "The response; server-sent events with `stream`",
            "content": {"text/event-stream": {"schema": {"type": "string"}}}}
