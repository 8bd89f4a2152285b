"""The response cache as the routers use it: decide, look up, store, replay as SSE.

An entry is always the non-streaming JSON response. A streaming request that hits gets it
replayed as a proper event stream (role, content, finish, usage, [DONE]); a streaming miss
stores what it streamed, so either form can hit the other's entry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from modelserve.api.chunks import ChunkHead, chat_chunk, completion_chunk
from modelserve.api.observe import RequestContext, context
from modelserve.api.protocol import (
    ChatChunkChoice,
    ChatCompletionResponse,
    CompletionResponse,
    DeltaMessage,
)
from modelserve.api.protocol_tools import DeltaFunction, DeltaToolCall
from modelserve.api.streams import event_stream, sse
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
    def start(cls, request: Request, route: str, req: BaseModel, deterministic: bool
              ) -> CachePlan:
        """`deterministic`: the same request always gives the same answer."""
        cache: ResponseCache | None = request.app.state.cache
        plan = cls(cache, route, context(request), request)
        if cache is None:
            return plan
        directives = request.headers.get("cache-control", "").lower()
        if not deterministic or "no-store" in directives:
            plan._mark("bypass")
            return plan
        lease = plan.ctx.leases[-1]
        body = req.model_dump(mode="json", exclude=NO_EFFECT)
        plan.key = cache.key(route, body, lease.loaded.revision, plan.ctx.key_id)
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


def cached_answer(entry: bytes, stream: bool,
                  replay: Callable[[dict[str, Any]], AsyncIterator[str]]) -> Response:
    """A hit as the client asked for it: the stored JSON, or `replay` of it as SSE."""
    if stream:
        return event_stream(replay(loads(entry)))
    return Response(entry, media_type="application/json")


async def replay_chat(body: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    """A stored chat answer as the live stream frames it (api/chat.py): every choice's role
    chunk, then its reasoning, its content and its finish; logprobs, if stored, ride on the
    content chunk."""
    answer = ChatCompletionResponse.model_validate(body)
    head = ChunkHead(answer.id, answer.created, answer.model, include_usage)
    for choice in answer.choices:
        yield chat_chunk(head, [ChatChunkChoice(
            index=choice.index, delta=DeltaMessage(role="assistant", content=""))])
    for choice in answer.choices:
        if choice.message.reasoning_content:  # thoughts come first, as they were streamed
            yield chat_chunk(head, [ChatChunkChoice(
                index=choice.index,
                delta=DeltaMessage(reasoning_content=choice.message.reasoning_content))])
        if choice.message.content or choice.logprobs is not None:
            yield chat_chunk(head, [ChatChunkChoice(
                index=choice.index, delta=DeltaMessage(content=choice.message.content),
                logprobs=choice.logprobs)])
        # Each call as the live stream sends it: id, type and name first, then its arguments.
        for n, call in enumerate(choice.message.tool_calls or []):
            first = DeltaToolCall(index=n, id=call.id, type="function",
                                  function=DeltaFunction(name=call.function.name, arguments=""))
            rest = DeltaToolCall(index=n, function=DeltaFunction(
                arguments=call.function.arguments))
            for delta in (first, rest):
                yield chat_chunk(head, [ChatChunkChoice(
                    index=choice.index, delta=DeltaMessage(tool_calls=[delta]))])
        yield chat_chunk(head, [ChatChunkChoice(index=choice.index, delta=DeltaMessage(),
                                                finish_reason=choice.finish_reason)])
    if include_usage:
        yield chat_chunk(head, [], answer.usage)
    yield sse("[DONE]")


async def replay_completion(body: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    answer = CompletionResponse.model_validate(body)
    head = ChunkHead(answer.id, answer.created, answer.model, include_usage)
    for choice in answer.choices:
        yield completion_chunk(head, [choice])
    if include_usage:
        yield completion_chunk(head, [], answer.usage)
    yield sse("[DONE]")


def loads(entry: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(entry)
    return body
