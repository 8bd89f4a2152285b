"""The FastAPI application: routers, error envelope, lifespan that loads the models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve import __version__
from modelserve.api import admin, admin_pull, admin_summary, console, models
from modelserve.api.auth import Authenticator
from modelserve.api.drain import Drain, DrainGate
from modelserve.api.errors import (
    SHAPES,
    APIError,
    BodyTimeout,
    BodyTooLarge,
    ErrorShape,
    error_response,
    install_error_handlers,
)
from modelserve.api.observe import RequestObserver
from modelserve.api.ollama import models as ollama_models
from modelserve.api.openapi import ERROR_MODELS, METRICS_RESPONSES, install_openapi
from modelserve.api.responses.store import ResponseStore
from modelserve.cache import ResponseCache
from modelserve.config import Settings
from modelserve.kinds import KINDS, ModelFront
from modelserve.kinds.wiring import serving_of
from modelserve.lifecycle import Lifecycle
from modelserve.metrics import ServerMetrics
from modelserve.registry import ModelRegistry
from modelserve.security import KeyRing, RateLimiter

logger = logging.getLogger(__name__)


class BodyLimit:
    """Refuse bodies over `max_request_bytes` (413), declared or streamed, and bodies that do
    not arrive whole within `body_timeout_seconds` (408: a slow sender holds nothing longer).
    A multipart upload (audio to transcribe, an image to edit) may be up to `max_upload_bytes`.

    A plain ASGI middleware: FastAPI's decorator middleware would wrap every streamed
    response in extra task and queue hops, which costs per SSE chunk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float,
                 upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        upload = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.upload_bytes if upload else self.max_bytes
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await self._refuse(scope, receive, send, upload)
        seen, whole = 0, False
        deadline = asyncio.get_running_loop().time() + self.timeout

        async def counted() -> Message:
            nonlocal seen, whole
            if whole:  # later receives wait for a disconnect: no deadline on those
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(f"The request body did not arrive within {self.timeout:g} s "
                                  "(body_timeout_seconds).") from None
            whole = message["type"] != "http.request" or not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > limit:  # a chunked body that declared no length
                raise BodyTooLarge(self._message(upload))
            return message

        await self.app(scope, counted, send)

    def _message(self, upload: bool) -> str:
        if upload:
            return (f"Request body exceeds the limit of {self.upload_bytes} bytes for uploads "
                    "(max_upload_bytes).")
        return f"Request body exceeds the limit of {self.max_bytes} bytes (max_request_bytes)."

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, upload: bool) -> None:
        err = APIError(413, self._message(upload), code="request_too_large")
        await error_response(err, scope["path"])(scope, receive, send)


def install_error_shapes() -> None:
    """Each surface answers its errors in its own shape (OpenAI's everywhere else)."""
    from modelserve.api.anthropic import errors as anthropic
    from modelserve.api.anthropic.protocol import AnthropicError
    from modelserve.api.ollama import errors as ollama
    from modelserve.api.ollama.protocol import OllamaError
    from modelserve.api.responses import surface as responses

    SHAPES["/v1/messages"] = ErrorShape(anthropic.body, anthropic.stream_error)
    # OpenAI's envelope for whole answers; its typed `error` event ends a Responses stream.
    SHAPES["/v1/responses"] = ErrorShape(APIError.body, responses.stream_error)
    ERROR_MODELS["/v1/messages"] = ("AnthropicError", AnthropicError)
    SHAPES["/api/"] = ErrorShape(ollama.body, ollama.stream_error)
    ERROR_MODELS["/api/"] = ("OllamaError", OllamaError)


def create_app(settings: Settings) -> FastAPI:
    registry = ModelRegistry(settings.models, settings.lifecycle)
    metrics = ServerMetrics(registry)
    lifecycle = Lifecycle(registry, hooks=metrics, cpu=settings.cpu)

    def on_loaded(name: str, front: ModelFront, seconds: float) -> None:
        metrics.model_load_seconds.labels(name).observe(seconds)

    lifecycle.on_loaded.append(on_loaded)

    keys = KeyRing.from_settings(settings)
    if not keys.enabled:
        logger.warning("no API keys configured: every route is open to whoever can connect")

    drain = Drain(settings.shutdown.drain_timeout_seconds)
    metrics.in_flight = lambda: drain.in_flight
    metrics.draining = lambda: drain.draining

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients that talk to Redis bind to the serving event loop, so they are made here.
        cache = ResponseCache(settings.cache, metrics.dependency_errors.labels("cache").inc) \
            if settings.cache.enabled else None
        app.state.cache = cache
        app.state.responses = ResponseStore(settings.responses, settings.cache)
        limiter = RateLimiter(settings.rate_limits, settings.limits.request_timeout_seconds,
                              metrics.dependency_errors.labels("rate_limits").inc) \
            if keys.enabled else None
        app.state.limiter = limiter
        if cache is not None and cache.health is not None:
            metrics.dependencies["cache"] = cache.health
        if limiter is not None and limiter.health is not None:
            metrics.dependencies["rate_limits"] = limiter.health
        await lifecycle.load_startup()
        reaper = asyncio.create_task(lifecycle.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            await lifecycle.close()
            if app.state.cache is not None:
                await app.state.cache.close()
            await app.state.responses.close()
            if limiter is not None:
                await limiter.close()

    app = FastAPI(title="modelserve", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics
    app.state.drain = drain
    app.state.cache = None
    app.state.responses = None
    app.state.limiter = None
    install_error_handlers(app)
    install_error_shapes()
    install_openapi(app, auth=keys.enabled, metrics_scope=settings.security.metrics_scope,
                    limits=settings.limits)
    # Every kind's routes, whether or not a model of that kind is configured (an admin load
    # may add one later), then the kind-independent ones.
    for kind in KINDS.values():
        for router in serving_of(kind).routers():
            app.include_router(router)
    for router in (models.router, ollama_models.router, admin.router, admin_pull.router,
                   admin_summary.router, console.router):
        app.include_router(router)

    # Added innermost first: the observer wraps everything, so it sees every response;
    # CORS answers preflights before auth; auth refuses before a body is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes,
                       upload_bytes=settings.max_upload_bytes,
                       timeout=settings.limits.body_timeout_seconds)
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
    # The drain gate inside the observer: refusals and drain-deadline endings are logged and
    # counted like any response.
    app.add_middleware(DrainGate, drain=drain)
    app.add_middleware(RequestObserver, metrics=metrics,
                       timeout=settings.limits.request_timeout_seconds,
                       json_logs=settings.log_format == "json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", responses={503: {
        "description": "Draining, a model not ready, or a required dependency down",
        "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def ready() -> JSONResponse:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        ok, detail = registry.readiness()
        if not ok:
            status = detail.pop("status", "not_ready")
            return JSONResponse({"status": status, "models": detail}, status_code=503)
        # Every dependency's state; a required one (fail_closed rate limits) that is down
        # makes the replica unready, since it could serve nothing.
        dependencies = {name: "up" if await health.check() else "down"
                        for name, health in metrics.dependencies.items()}
        body: dict[str, object] = {"status": "ready"}
        if dependencies:
            body["dependencies"] = dependencies
        if any(metrics.dependencies[name].required and state == "down"
               for name, state in dependencies.items()):
            body["status"] = "dependency_unavailable"
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
    async def metrics_alias(request: Request) -> Response:
        await registry.refresh_stats()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
