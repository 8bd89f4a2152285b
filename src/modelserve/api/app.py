"""The FastAPI application: routers, error envelope, lifespan that loads the models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve import __version__
from modelserve.api import admin, chat, completions, embeddings, images, models, tokenize
from modelserve.api.auth import Authenticator
from modelserve.api.errors import APIError, BodyTooLarge, install_error_handlers
from modelserve.api.observe import RequestObserver
from modelserve.cache import ResponseCache
from modelserve.config import Settings
from modelserve.metrics import ServerMetrics
from modelserve.registry import ModelRegistry, Runtime
from modelserve.runtimes.llama_chat import LlamaChatRuntime
from modelserve.security import KeyRing, RateLimiter

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
    registry = ModelRegistry(settings.models, settings.lifecycle)
    metrics = ServerMetrics(registry)

    def on_loaded(name: str, runtime: Runtime, seconds: float) -> None:
        metrics.model_load_seconds.labels(name).observe(seconds)
        if isinstance(runtime, LlamaChatRuntime):
            runtime.timing = metrics.timing_for(name)

    registry.on_loaded.append(on_loaded)

    keys = KeyRing.from_settings(settings)
    if not keys.enabled:
        logger.warning("no API keys configured: every route is open to whoever can connect")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients that talk to Redis bind to the serving event loop, so they are made here.
        app.state.cache = ResponseCache(settings.cache) if settings.cache.enabled else None
        limiter = RateLimiter(settings.rate_limits, settings.limits.request_timeout_seconds) \
            if keys.enabled else None
        app.state.limiter = limiter
        await registry.load_startup()
        reaper = asyncio.create_task(registry.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            await registry.close()
            if app.state.cache is not None:
                await app.state.cache.close()
            if limiter is not None:
                await limiter.close()

    app = FastAPI(title="modelserve", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.cache = None
    app.state.limiter = None
    install_error_handlers(app)
    for module in (chat, completions, embeddings, images, models, tokenize, admin):
        app.include_router(module.router)

    # Added innermost first: the observer wraps everything, so it sees every response;
    # CORS answers preflights before auth; auth refuses before a body is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(Authenticator, keys=keys, metrics_scope=settings.security.metrics_scope,
                       metrics=metrics)
    if settings.security.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.security.cors_origins,
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "Cache-Control",
                                          "X-Request-Id"],
                           expose_headers=["x-request-id", "x-modelserve-cache",
                                           "x-ratelimit-limit-requests",
                                           "x-ratelimit-remaining-requests",
                                           "x-ratelimit-reset-requests",
                                           "x-ratelimit-limit-tokens",
                                           "x-ratelimit-remaining-tokens",
                                           "x-ratelimit-reset-tokens"])
    app.add_middleware(RequestObserver, metrics=metrics,
                       timeout=settings.limits.request_timeout_seconds,
                       json_logs=settings.log_format == "json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok, detail = registry.readiness()
        if ok:
            return JSONResponse({"status": "ready"})
        status = detail.pop("status", "not_ready")
        return JSONResponse({"status": status, "models": detail}, status_code=503)

    @app.get("/metrics")
    async def metrics_alias(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
