"""What every Ollama route shares: JSON bodies whatever their content type, model names
(Ollama's `:latest` tag), keep-alive, and Ollama's timestamps."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from modelserve.api.errors import bad_request
from modelserve.api.ollama.errors import not_found
from modelserve.api.ollama.options import keep_alive_seconds
from modelserve.registry import ModelRegistry

LATEST = ":latest"


class JsonBody(APIRoute):
    """Ollama reads every body as JSON, whatever its content type: its own examples are
    `curl URL -d '{...}'`, which sends `application/x-www-form-urlencoded`, and FastAPI parses
    JSON only under a JSON content type."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await super().handle(scope, receive, send)


def ollama_router() -> APIRouter:
    return APIRouter(route_class=JsonBody)


def registry_of(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def resolve(request: Request, name: str) -> str:
    """The configured model a client's name means: `smol:latest` is `smol` (Ollama adds
    the tag to untagged names). An unknown one is Ollama's 404."""
    found = resolve_quietly(request, name)
    if found is None:
        raise not_found(name)
    return found


def resolve_quietly(request: Request, name: str) -> str | None:
    """`resolve`, with None for a name no model has."""
    entries = registry_of(request).entries
    if name in entries:
        return name
    if name.endswith(LATEST) and name.removesuffix(LATEST) in entries:
        return name.removesuffix(LATEST)
    return None


def tagged(name: str) -> str:
    """A model's name as Ollama lists it: with a tag, `:latest` when it has none."""
    return name if ":" in name else name + LATEST


class ModelHold:
    """An Ollama request's dealings with its model: its `keep_alive`, checked when the request
    arrives and applied once the model is held for it (so a keep_alive of 0 cannot unload the
    model before the request runs), and the load it waited for (`load_duration`)."""

    def __init__(self, request: Request, name: str, value: float | str | None) -> None:
        self.registry = registry_of(request)
        self.name = name
        self.arrived = time.time()
        self.seconds = keep_alive_seconds(value)
        if self.seconds is not None and self.seconds >= 0 \
                and not self.registry.policy.lazy_load:
            # An unloaded model would stay unloaded: requests would fail until an operator
            # loads it again.
            raise bad_request("keep_alive cannot unload models on this server: it does not "
                              "load them on demand (lifecycle.lazy_load is off). Send -1 or "
                              "leave it out.", param="keep_alive")

    def apply(self) -> None:
        """Ollama's rule: each request sets how long its model stays loaded once idle; one
        that says nothing sets the default back."""
        entry = self.registry.entries.get(self.name)
        if entry is not None:
            entry.keep_alive = self.seconds


    def load_ns(self) -> int:
        """How long the model took to load, if it loaded while this request waited."""
        entry = self.registry.entries.get(self.name)
        if entry is None or entry.current is None or entry.load_seconds is None \
                or entry.current.loaded_at < self.arrived:
            return 0
        return int(entry.load_seconds * 1e9)


def now_iso() -> str:
    """RFC 3339 in UTC, as Ollama writes `created_at`."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
