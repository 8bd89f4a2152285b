"""A turn's choices running: submitted together, their outputs merged as they come, parsed
into the core's events (events.py), collected into one result; stopped when the client goes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from fastapi import Request

from modelserve.api.errors import APIError, model_unavailable, queue_full
from modelserve.api.streams import unless_disconnected
from modelserve.chat.events import (
    Choice,
    Event,
    Finish,
    Logprobs,
    Result,
    TextDelta,
    Usage,
)
from modelserve.chat.reasoning import OutputParser
from modelserve.engine.generation import Generation
from modelserve.engine.sequence import ImageSpan, SamplingParams, StepOutput, TokenLogprob
from modelserve.failures import BUSY, UNAVAILABLE
from modelserve.kinds.chat import ChatModel

T = TypeVar("T")


def submit_all(model: ChatModel, jobs: list[tuple[list[int], SamplingParams]],
               images: list[ImageSpan] | None = None, salt: str = "") -> list[Generation]:
    """Queue every choice or none: a refusal (a full queue, a dead or stalled worker)
    cancels what was queued and is answered as api/errors.py says. `salt`: the scope of the
    prompt KV they may reuse (chat/cache_scope.py)."""
    started: list[Generation] = []
    try:
        for prompt, params in jobs:
            started.append(model.submit(prompt, replace(params, cache_salt=salt), images))
    except BaseException:
        for gen in started:
            gen.cancel()
        raise
    return started


@dataclass
class ChoiceOutput:
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0


async def collect(gen: Generation) -> ChoiceOutput:
    result = ChoiceOutput()
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


class TurnRun:
    """The choices of one turn as they run: `events()` yields what they produce, parsed (each
    choice's text through its OutputParser: reasoning, content, tool calls); once it has run
    to the end, `result` holds the whole answer and `usage` the counts. A failure raises the
    APIError the surface renders (mid-stream: as its error event)."""

    def __init__(self, gens: list[Generation], prompt_tokens: int, model: str,
                 parser: Callable[[], OutputParser] | None, logprobs: bool) -> None:
        self.gens = gens
        self.prompt_tokens = prompt_tokens
        self.model = model
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        self._parsers = [parser() for _ in gens] if parser is not None else None
        self._logprobs = logprobs
        self._texts = [""] * len(gens)
        self._tokens: list[list[TokenLogprob]] = [[] for _ in gens]
        self._finishes: list[Finish | None] = [None] * len(gens)
        self.completion_tokens = 0
        self.cached_tokens = prompt_tokens
        self.accepted_prediction_tokens = 0
        self.rejected_prediction_tokens = 0
        self.result: Result | None = None

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens,
                     self.accepted_prediction_tokens, self.rejected_prediction_tokens)

    async def events(self) -> AsyncIterator[Event]:
        async for index, out in merge(self.gens):
            raise_if_failed(out)
            self.completion_tokens += len(out.token_ids)
            for event in self._step(index, out):
                yield event
        self.result = self._whole()

    def _step(self, index: int, out: StepOutput) -> list[Event]:
        lps = out.logprobs if self._logprobs and out.logprobs else None
        if lps is not None:
            self._tokens[index] += lps
        self._texts[index] += out.text
        parser = self._parsers[index] if self._parsers is not None else None
        events: list[Event] = []
        if parser is None:
            if out.text or lps is not None:
                events.append(TextDelta(index, out.text, lps))
        else:
            parsed = parser.feed(out.text)
            # Unchanged text (the common case) carries its own logprobs.
            if len(parsed) == 1 and isinstance(parsed[0], TextDelta) \
                    and parsed[0].text == out.text:
                events.append(TextDelta(index, out.text, lps))
            else:
                for event in parsed:
                    event.index = index
                events += parsed
                if lps is not None:
                    events.append(Logprobs(index, lps))
        if out.finish_reason is not None:
            if parser is not None:
                for event in parser.finish():
                    event.index = index
                    events.append(event)
            self.cached_tokens = min(self.cached_tokens, out.cached_tokens)
            # A sequence's last output carries its prediction totals; choices add up.
            self.accepted_prediction_tokens += out.accepted_prediction_tokens
            self.rejected_prediction_tokens += out.rejected_prediction_tokens
            reason = out.finish_reason
            if parser is not None and reason == "stop" and parser.answer().tool_calls:
                reason = "tool_calls"  # one cut short by max_tokens stays "length"
            finish = Finish(index, reason, out.stop_sequence)
            self._finishes[index] = finish
            events.append(finish)
        return events

    def _whole(self) -> Result | None:
        """The whole answer, when every choice ended as a client may see again (stop,
        length, tool calls: not cancelled)."""
        choices = []
        for index, finish in enumerate(self._finishes):
            if finish is None or finish.reason not in ("stop", "length", "tool_calls"):
                return None
            if self._parsers is not None:
                answer = self._parsers[index].answer()
                content, reasoning, calls = answer.content, answer.reasoning, answer.tool_calls
            else:
                content, reasoning, calls = self._texts[index], None, []
            choices.append(Choice(index, content, reasoning, calls, finish.reason,
                                  finish.stop_sequence,
                                  self._tokens[index] if self._logprobs else None))
        return Result(self.id, self.created, self.model, choices, self.usage)

    async def collect(self, request: Request) -> Result:
        """Run to the end (not streamed); the client going away stops the choices."""
        async def drain() -> None:
            async for _ in self.events():
                pass

        await unless_disconnected(request, drain(), self.gens)
        assert self.result is not None
        return self.result
