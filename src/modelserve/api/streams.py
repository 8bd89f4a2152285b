"""Running generations for a response: submit every choice, collect or merge their outputs,
stop them when the client goes away, and frame events as SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from modelserve.api.errors import APIError, model_unavailable, queue_full
from modelserve.engine.generation import Generation
from modelserve.engine.sequence import ImageSpan, SamplingParams, StepOutput, TokenLogprob
from modelserve.failures import BUSY, UNAVAILABLE
from modelserve.kinds.chat import ChatModel

T = TypeVar("T")


def submit_all(model: ChatModel, jobs: list[tuple[list[int], SamplingParams]],
               images: list[ImageSpan] | None = None) -> list[Generation]:
    """Queue every choice or none: a refusal (a full queue, a dead or stalled worker)
    cancels what was queued and is answered as api/errors.py says."""
    started: list[Generation] = []
    try:
        for prompt, params in jobs:
            started.append(model.submit(prompt, params, images))
    except BaseException:
        for gen in started:
            gen.cancel()
        raise
    return started


@dataclass
class ChoiceResult:
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0


async def collect(gen: Generation) -> ChoiceResult:
    result = ChoiceResult()
    async for out in gen:
        result.text += out.text
        result.tokens += out.token_ids
        result.logprobs += out.logprobs
        result.prompt_tokens = out.prompt_tokens
        result.cached_tokens = out.cached_tokens
        if out.finish_reason is not None:
            raise_if_failed(out)
            result.finish_reason = out.finish_reason
    return result


def raise_if_failed(out: StepOutput) -> None:
    if out.finish_reason != "error":
        return
    if out.error_code == UNAVAILABLE:
        raise model_unavailable(f"generation failed: {out.error}")
    if out.error_code == BUSY:
        raise queue_full()
    raise APIError(500, f"generation failed: {out.error}", type="server_error")


async def merge(gens: list[Generation]) -> AsyncIterator[tuple[int, StepOutput]]:
    """Interleave the outputs of several choices as they come, tagged with their index."""
    if len(gens) == 1:  # the common case needs no tasks and no second queue
        try:
            async for out in gens[0]:
                yield 0, out
        finally:
            gens[0].cancel()
        return
    queue: asyncio.Queue[tuple[int, StepOutput | None]] = asyncio.Queue()

    async def pump(index: int, gen: Generation) -> None:
        try:
            async for out in gen:
                await queue.put((index, out))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        for gen in gens:
            gen.cancel()


async def unless_disconnected(request: Request, work: Awaitable[T],
                              gens: list[Generation]) -> T:
    """Await `work`, but cancel the sequences as soon as the client goes away."""
    async def wait_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # client gone, or this request was cancelled (wall-time limit)
            task.cancel()
            for gen in gens:
                gen.cancel()
    # Not done: the client went away first; the cancel above is still on its way (so the
    # task is not `cancelled()` yet, and asking for its result would be an error, a 500).
    if not task.done() or task.cancelled():
        raise APIError(499, "client disconnected", code="client_closed_request")
    return task.result()


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"


def sse_json(body: dict[str, Any]) -> str:
    return sse(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
