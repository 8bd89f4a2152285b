"""A chat turn through the request pipeline (api/pipeline.py), for any API surface.

The surface gives the turn and encodes what comes out (`Surface`); this module does the rest
in the pipeline's order: limits, lease, count, admission, cache, images, run. The cache keeps
the neutral result, so a hit is encoded like a fresh answer, streamed or whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from modelserve.api import leases, pipeline
from modelserve.api.caching import CachePlan
from modelserve.api.input_limits import limits_of
from modelserve.api.observe import context
from modelserve.chat import plan as planning
from modelserve.chat.cache_scope import cache_salt
from modelserve.chat.events import Event, Result, Usage
from modelserve.chat.run import TurnRun, submit_all
from modelserve.chat.turn import Turn
from modelserve.config import ImageSettings
from modelserve.config_sections import InputLimits
from modelserve.kinds.chat import CHAT, ChatModel


class Source(Protocol):
    """What a surface encodes a stream from: a live run, or a cached result replayed."""

    id: str
    created: int
    model: str

    @property
    def usage(self) -> Usage: ...

    def events(self) -> AsyncIterator[Event]: ...


class Surface(Protocol):
    """An API dialect's side of a chat turn."""

    cache_route: str  # its name in cache keys and metrics
    media_type: str  # of its streams

    def cache_body(self) -> dict[str, Any]:
        """What identifies the request for the cache (fields that change the answer)."""

    def answer(self, result: Result, model: ChatModel) -> bytes:
        """The whole answer, as this API's JSON."""

    def stream(self, source: Source, model: ChatModel) -> AsyncIterator[str]:
        """The answer as this API streams it; a failure mid-stream (an APIError raised by
        `source.events()`) as its own error event."""


class Replay:
    """A cached result as a stream source."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.id, self.created, self.model = result.id, result.created, result.model

    @property
    def usage(self) -> Usage:
        return self.result.usage

    async def events(self) -> AsyncIterator[Event]:
        for event in self.result.events():
            yield event


class TurnRoute(pipeline.Route[Turn, ChatModel]):
    """`stream`: the client asked for a stream."""

    def __init__(self, turn: Turn, request: Request, surface: Surface, stream: bool,
                 use: str | None = None) -> None:
        super().__init__(turn, request)
        self.surface = surface
        self.stream = stream
        self.use = use
        self.cache_route = surface.cache_route

    def check_limits(self, limits: InputLimits) -> None:
        self.plan = planning.check(self.req, limits)

    async def acquire(self) -> ChatModel:
        return await leases.acquire_kind(self.request, self.req.model, CHAT, self.use)

    async def count(self, runtime: ChatModel) -> tuple[int, int]:
        return planning.count(self.plan, runtime, self._images())

    def deterministic(self) -> bool:
        return self.req.deterministic()

    def cache_body(self) -> dict[str, Any]:
        return self.surface.cache_body()

    def replay(self, entry: bytes, runtime: ChatModel) -> Response:
        result = Result.from_json(json.loads(entry))
        if self.stream:
            return self._streaming(self.surface.stream(Replay(result), runtime))
        return Response(self.surface.answer(result, runtime), media_type="application/json")

    async def prepare(self, runtime: ChatModel) -> None:
        counter = self.request.app.state.metrics.image_inputs

        def count(stage: str, n: int) -> None:
            counter.labels(self.req.model, stage).inc(n)

        prompt_tokens = await planning.prepare(self.plan, runtime, self._images(), count)
        if prompt_tokens is not None:  # image spans count as prompt tokens, in usage too
            context(self.request).prompt_tokens = prompt_tokens

    async def respond(self, runtime: ChatModel, plan: CachePlan) -> Response:
        turn, images = self.req, self.plan.multimodal
        salt = cache_salt(context(self.request).key_id, runtime.cache_scope == "per_key",
                          turn.sampling.cache_salt)
        gens = submit_all(runtime, self.plan.jobs(), images.images if images else None, salt)
        run = TurnRun(gens, len(self.plan.tokens), turn.model, self.plan.parser,
                      turn.sampling.logprobs is not None)
        if self.stream:
            return self._streaming(self._run_stream(run, runtime, plan))
        result = await run.collect(self.request)
        context(self.request).completion_tokens = run.completion_tokens
        await plan.store(json.dumps(result.to_json()).encode())
        return Response(self.surface.answer(result, runtime), media_type="application/json")

    async def _run_stream(self, run: TurnRun, model: ChatModel, plan: CachePlan
                          ) -> AsyncIterator[str]:
        try:
            async for chunk in self.surface.stream(run, model):
                yield chunk
        finally:
            plan.ctx.completion_tokens = run.completion_tokens
        if run.result is not None:  # after the last byte: what was streamed, call ids too
            await plan.store(json.dumps(run.result.to_json()).encode())

    def _streaming(self, chunks: AsyncIterator[str]) -> StreamingResponse:
        return StreamingResponse(chunks, media_type=self.surface.media_type,
                                 headers={"Cache-Control": "no-cache"})

    def _images(self) -> ImageSettings:
        settings: ImageSettings = self.request.app.state.settings.images
        return settings


async def count_prompt(turn: Turn, request: Request) -> int:
    """The prompt's tokens as the model sees them (its template, tools, a marker for each
    image), for the count-tokens routes: checked like a turn, run nowhere."""
    plan = planning.check(turn, limits_of(request))
    model = await leases.acquire_kind(request, turn.model, CHAT)
    settings: ImageSettings = request.app.state.settings.images
    return planning.count(plan, model, settings)[0]


async def serve(turn: Turn, request: Request, surface: Surface, stream: bool,
                use: str | None = None) -> Response:
    """A chat turn through the pipeline, answered by `surface`."""
    return await pipeline.serve(TurnRoute(turn, request, surface, stream, use))
