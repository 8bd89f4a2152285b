"""Per-request bookkeeping around every HTTP request: id, wall-time limit, metrics, log line.

A plain ASGI middleware (no per-chunk task hops on SSE streams). It runs until the last byte
of a streamed body, so it is also where a request's model leases and concurrency slots are
released, whatever way the request ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.errors import APIError, error_response
from modelserve.metrics import ServerMetrics
from modelserve.registry import Lease
from modelserve.security import KeyInfo

access_log = logging.getLogger("modelserve.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass
class RequestContext:
    request_id: str
    started: float
    deadline: float | None = None  # the event loop's time when request_timeout_seconds ends
    key_id: str | None = None
    key: KeyInfo | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cache: str | None = None
    limits_unenforced: bool = False  # the limits' storage failed and the policy is fail_open
    leases: list[Lease] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # added to the response
    on_finish: list[Callable[[RequestContext], Awaitable[None]]] = field(default_factory=list)

    async def finish(self) -> None:
        for lease in self.leases:
            lease.release()
        self.leases.clear()
        callbacks, self.on_finish = self.on_finish, []
        for callback in callbacks:
            try:
                await callback(self)
            except Exception:  # bookkeeping must never turn into a failed response
                logging.getLogger(__name__).exception("request finish callback failed")


def context(request: Request) -> RequestContext:
    """The request's context, which RequestObserver put in its scope."""
    ctx = request.scope["state"]["ctx"]
    assert isinstance(ctx, RequestContext)
    return ctx


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics, timeout: float,
                 json_logs: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.timeout = timeout
        self.json_logs = json_logs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        ctx = RequestContext(incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex,
                             time.perf_counter())
        ctx.deadline = asyncio.get_running_loop().time() + self.timeout
        scope.setdefault("state", {})["ctx"] = ctx
        status, started = 500, False

        async def send_observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                extra = {"x-request-id": ctx.request_id, **ctx.headers}
                if ctx.cache is not None:
                    extra["x-modelserve-cache"] = ctx.cache
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in extra.items())]
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive, send_observed)
        except TimeoutError:
            if not started:
                err = APIError(408, f"The request took longer than the server's limit of "
                               f"{self.timeout:g} s (request_timeout_seconds).",
                               code="request_timeout")
                await error_response(err, scope["path"])(scope, receive, send_observed)
            else:  # mid-stream: all we can do is end the body
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await ctx.finish()
            self._record(scope, ctx, status)

    def _record(self, scope: Scope, ctx: RequestContext, status: int) -> None:
        route = getattr(scope.get("route"), "path", "other")
        seconds = time.perf_counter() - ctx.started
        model = self.metrics.model_label(ctx.model)
        self.metrics.requests.labels(route, model, str(status)).inc()
        self.metrics.request_seconds.labels(route, model).observe(seconds)
        if ctx.limits_unenforced:
            self.metrics.unlimited_requests.inc()
        fields: dict[str, Any] = {
            "request_id": ctx.request_id, "method": scope.get("method"),
            "path": scope.get("path"), "status": status, "latency_ms": round(seconds * 1000, 1),
            "key_id": ctx.key_id, "model": ctx.model, "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": ctx.completion_tokens, "cache": ctx.cache,
        }
        if self.json_logs:
            access_log.info(json.dumps({k: v for k, v in fields.items() if v is not None}))
        else:
            access_log.info(" ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
