"""One request pipeline for the model routes, in one order, written down once (`serve`).

    parse          FastAPI validates the body into the route's request type
    input limits   the server's caps (`limits:`), before anything touches a model
    acquire        lease the model: its tokenizer counts what admission charges, and its
                   revision is part of the cache key, so it comes before both
    count          the prompt's tokens and the most it may generate (cheap: no image work)
    admission      per-key tokens and concurrency (429); requests per minute were counted
                   earlier, by the Authenticator middleware, before the body was read
    cache lookup   a hit answers here
    prepare        the costly inputs (vision: fetch, decode and encode images)
    submit+respond run the model, answer (JSON or SSE), store the answer in the cache
    settle         RequestContext.finish (api/observe.py), after the last byte: releases the
                   lease and charges what the request really used

Cheap refusals (400, 429) and cache hits therefore cost no fetch, decode or encode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel

from modelserve.api import admission
from modelserve.api.caching import NO_EFFECT, CachePlan
from modelserve.api.input_limits import limits_of
from modelserve.config_sections import InputLimits

RT = TypeVar("RT")
Req = TypeVar("Req")


class Route(ABC, Generic[Req, RT]):
    """One route's steps; `serve` runs them in the pipeline's order."""

    cache_route: str  # the route's name in cache keys and metrics

    def __init__(self, req: Req, request: Request) -> None:
        self.req = req
        self.request = request

    @abstractmethod
    def check_limits(self, limits: InputLimits) -> None: ...

    @abstractmethod
    async def acquire(self) -> RT: ...

    @abstractmethod
    async def count(self, runtime: RT) -> tuple[int, int]:
        """(prompt tokens, max new tokens) to admit; raise a 400 for a bad request. Never
        blocks the loop on the model's worker: at most an awaited call."""

    @abstractmethod
    def deterministic(self) -> bool:
        """The same request always gives the same answer (so it may be cached)."""

    def cache_body(self) -> dict[str, Any]:
        """What identifies the request in the cache: its fields, but those that never change
        the answer (a wire request's; a route with another kind of request says)."""
        assert isinstance(self.req, BaseModel)
        return self.req.model_dump(mode="json", exclude=NO_EFFECT)

    def replay(self, entry: bytes, runtime: RT) -> Response:
        """A cache hit as the client asked for it."""
        return Response(entry, media_type="application/json")

    async def prepare(self, runtime: RT) -> None:
        """Costly input work, done only for a request that will run."""

    @abstractmethod
    async def respond(self, runtime: RT, plan: CachePlan) -> Response:
        """Submit, answer, and store the answer through `plan`."""


async def serve(route: Route[Req, RT]) -> Response:
    request = route.request
    route.check_limits(limits_of(request))
    runtime = await route.acquire()
    prompt_tokens, max_new_tokens = await route.count(runtime)
    await admission.admit(request, prompt_tokens, max_new_tokens)
    plan = CachePlan.start(request, route.cache_route, route.cache_body,
                           route.deterministic())
    hit = await plan.lookup()
    if hit is not None:
        return route.replay(hit, runtime)
    await route.prepare(runtime)
    return await route.respond(runtime, plan)
