"""The response cache as the routes use it: decide, key, look up, store.

What an entry holds is the route's business: a chat turn keeps the core's neutral result
(chat/route.py), which its surface encodes streamed or whole, so either form of a request
hits the other's entry; embeddings keep their JSON body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from modelserve.api.observe import RequestContext, context
from modelserve.cache import ResponseCache

# Request fields that never change the response body.
NO_EFFECT = {"stream", "stream_options", "user"}


@dataclass
class CachePlan:
    cache: ResponseCache | None
    route: str
    ctx: RequestContext
    request: Request
    key: str | None = None
    read: bool = False

    @classmethod
    def start(cls, request: Request, route: str, body_of: Callable[[], dict[str, Any]],
              deterministic: bool) -> CachePlan:
        """`deterministic`: the same request always gives the same answer; `body_of()`: what
        identifies it (asked only when there is a cache to key)."""
        cache: ResponseCache | None = request.app.state.cache
        plan = cls(cache, route, context(request), request)
        if cache is None:
            return plan
        directives = request.headers.get("cache-control", "").lower()
        if not deterministic or "no-store" in directives:
            plan._mark("bypass")
            return plan
        lease = plan.ctx.leases[-1]
        plan.key = cache.key(route, body_of(), lease.loaded.revision, plan.ctx.key_id)
        plan.read = "no-cache" not in directives  # no-cache: answer fresh, then refresh
        if not plan.read:
            plan._mark("bypass")
        return plan

    def _mark(self, result: str) -> None:
        self.ctx.cache = result
        self.request.app.state.metrics.cache_lookups.labels(self.route, result).inc()

    async def lookup(self) -> bytes | None:
        if self.cache is None or self.key is None or not self.read:
            return None
        found = await self.cache.get(self.key)
        self._mark("hit" if found is not None else "miss")
        return found

    async def store(self, body: bytes) -> None:
        if self.cache is not None and self.key is not None and \
                await self.cache.put(self.key, body):
            self.request.app.state.metrics.cache_stores.labels(self.route).inc()
