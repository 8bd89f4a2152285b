"""The FastAPI application: routers, error envelope, lifespan that loads the models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelserve import __version__
from modelserve.api import chat, completions, models, tokenize
from modelserve.api.errors import APIError, install_error_handlers
from modelserve.config import Settings
from modelserve.metrics import build_registry
from modelserve.registry import ModelRegistry

logger = logging.getLogger(__name__)


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
    for module in (chat, completions, models, tokenize):
        app.include_router(module.router)

    @app.middleware("http")
    async def limit_body(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit()
                                   or int(length) > settings.max_request_bytes):
            err = APIError(413, f"Request body exceeds the limit of {settings.max_request_bytes}"
                           " bytes (max_request_bytes).", code="request_too_large")
            return JSONResponse(err.body(), status_code=413)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        ok = bool(request.app.state.ready)
        return JSONResponse({"status": "ready" if ok else "loading"},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics),
                        media_type=CONTENT_TYPE_LATEST)

    return app
