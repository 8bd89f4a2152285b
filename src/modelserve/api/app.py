"""The FastAPI application: routers, error envelope, lifespan that loads the models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve import __version__
from modelserve.api import chat, completions, embeddings, images, models, tokenize
from modelserve.api.errors import APIError, BodyTooLarge, install_error_handlers
from modelserve.config import Settings
from modelserve.metrics import build_registry
from modelserve.registry import ModelRegistry

logger = logging.getLogger(__name__)


class BodyLimit:
    """Refuse bodies over `max_request_bytes` (413), declared or streamed.

    A plain ASGI middleware: FastAPI's decorator middleware would wrap every streamed
    response in extra task and queue hops, which costs per SSE chunk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # a chunked body that declared no length
                raise BodyTooLarge(self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"Request body exceeds the limit of {self.max_bytes} bytes (max_request_bytes)."

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        err = APIError(413, self._message(), code="request_too_large")
        await JSONResponse(err.body(), status_code=413)(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    registry = ModelRegistry(settings.models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(registry.load_all)
        app.state.ready = True
        try:
            yield
        finally:
            await asyncio.to_thread(registry.close)

    app = FastAPI(title="modelserve", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.ready = False
    app.state.metrics = build_registry(registry)
    install_error_handlers(app)
    for module in (chat, completions, embeddings, images, models, tokenize):
        app.include_router(module.router)

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        if not request.app.state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        if registry.failed:
            return JSONResponse({"status": "degraded", "failed": registry.failed},
                                status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics),
                        media_type=CONTENT_TYPE_LATEST)

    return app
