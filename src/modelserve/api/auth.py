"""Bearer API keys on every route but /health and /ready: `user` scope for the API,
`admin` for /admin (and /metrics unless configured public), plus the per-key request rate.

A plain ASGI middleware, so a request is refused before its body is even read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from modelserve.api.admission import limits_unavailable, rate_limited
from modelserve.api.errors import APIError, error_response
from modelserve.api.observe import RequestContext
from modelserve.metrics import ServerMetrics
from modelserve.security import KeyRing, LimitsUnavailable, RateLimited, RateLimiter

PUBLIC = {"/health", "/ready"}
# The web console's page and assets load without a key; every API call it makes needs one.
PUBLIC_PREFIX = "/ui"


class Authenticator:
    def __init__(self, app: ASGIApp, keys: KeyRing, metrics_scope: str,
                 metrics: ServerMetrics) -> None:
        self.app = app
        self.keys = keys
        self.metrics_scope = metrics_scope
        self.metrics = metrics

    def needed_scope(self, path: str) -> str | None:
        if path in PUBLIC or path == PUBLIC_PREFIX or path.startswith(PUBLIC_PREFIX + "/"):
            return None
        if path == "/metrics":
            return None if self.metrics_scope == "public" else self.metrics_scope
        return "admin" if path == "/admin" or path.startswith("/admin/") else "user"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not self.keys.enabled:
            return await self.app(scope, receive, send)
        needed = self.needed_scope(scope["path"])
        if needed is None:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        # Anthropic's clients send the key as x-api-key (its newer SDK as a bearer too).
        given = token.strip() if scheme.lower() == "bearer" else \
            headers.get(b"x-api-key", b"").decode("latin-1").strip()
        key = self.keys.authenticate(given) if given else None
        if key is None:
            message = ("Incorrect API key provided." if header or given else
                       "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                       "(or 'x-api-key: KEY').")
            return await _refuse(scope, receive, send, APIError(
                401, message, type="invalid_request_error", code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"}))
        ctx: RequestContext = scope["state"]["ctx"]
        ctx.key, ctx.key_id = key, key.id
        if needed == "admin" and key.scope != "admin":
            return await _refuse(scope, receive, send, APIError(
                403, "This API key does not have the admin scope this route needs.",
                type="permission_error", code="insufficient_permissions"))
        # Made in the app's lifespan (it may talk to Redis on the serving loop).
        limiter: RateLimiter | None = scope["app"].state.limiter
        if limiter is not None and needed == "user":
            try:
                enforced = await limiter.check_request(key, ctx.headers)
            except RateLimited as exc:
                self.metrics.rate_limited.labels(exc.limit).inc()
                return await _refuse(scope, receive, send, rate_limited(exc))
            except LimitsUnavailable as exc:
                return await _refuse(scope, receive, send, limits_unavailable(exc))
            ctx.limits_unenforced |= not enforced
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, err: APIError) -> None:
    await error_response(err, scope["path"])(scope, receive, send)
