"""The chat core's result and events as Ollama's answers: one JSON object, or NDJSON lines
(`done: false` pieces, then a `done: true` line with the counts and durations).

Durations are in nanoseconds and measured here, at the API: `load_duration` is the model's
load when it loaded while the request waited; the prompt's evaluation runs from then to the
first event, generation after it (so output held back, as a tool call is until it is whole,
counts as prompt time); a whole answer has no first event, so its generation time is all of
it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from modelserve.api import sampling
from modelserve.api.errors import APIError
from modelserve.api.ollama.common import ModelHold, now_iso
from modelserve.api.ollama.errors import stream_error
from modelserve.api.streams import json_line
from modelserve.chat import events as ev
from modelserve.chat.route import Source
from modelserve.engine.sequence import TokenLogprob
from modelserve.kinds.chat import ChatModel

AnswerField = Literal["message", "response"]  # /api/chat's answer field, /api/generate's


def arguments(text: str) -> dict[str, Any]:
    """A call's JSON arguments as the object Ollama sends."""
    try:
        value = json.loads(text)
    except ValueError:  # cut short by num_predict: the client still gets an object
        return {}
    return value if isinstance(value, dict) else {"value": value}


def calls(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"function": {"name": name, "arguments": arguments(args)}} for name, args in items]


class OllamaSurface:
    media_type = "application/x-ndjson"

    def __init__(self, field: AnswerField, model: str, body: dict[str, Any],
                 hold: ModelHold, logprobs: bool = False) -> None:
        self.field = field
        self.cache_route = "ollama_chat" if field == "message" else "ollama_generate"
        self.model = model  # as the client named it: Ollama echoes the name
        self.body = body
        self.hold = hold
        self.logprobs = logprobs
        self.started = time.perf_counter_ns()

    def cache_body(self) -> dict[str, Any]:
        return self.body

    def _piece(self, text: str = "", thinking: str | None = None,
               tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The answer's fields in this route's shape."""
        if self.field == "response":
            out: dict[str, Any] = {"response": text}
            if thinking:
                out["thinking"] = thinking
            return out
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"message": message}

    def _head(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": now_iso()}

    def _tail(self, reason: str, usage: ev.Usage, first: int | None) -> dict[str, Any]:
        end = time.perf_counter_ns()
        load = self.hold.load_ns()
        ready = min(self.started + load, end)  # when the model was there to run the prompt
        return {"done": True, "done_reason": "length" if reason == "length" else "stop",
                "total_duration": end - self.started, "load_duration": load,
                "prompt_eval_count": usage.prompt_tokens,
                "prompt_eval_duration": max(first - ready, 0) if first is not None else 0,
                "eval_count": usage.completion_tokens,
                "eval_duration": end - (first if first is not None else ready)}

    def _logprobs(self, model: ChatModel, logprobs: list[TokenLogprob] | None
                  ) -> dict[str, Any]:
        """The tokens' logprobs, when asked for: OpenAI's entries are Ollama's (token,
        logprob, bytes, top_logprobs)."""
        if not self.logprobs or logprobs is None:
            return {}
        return {"logprobs": [sampling.chat_logprob_entry(model, lp).model_dump()
                             for lp in logprobs]}

    def answer(self, result: ev.Result, model: ChatModel) -> bytes:
        self.hold.apply()
        choice = result.choices[0]
        body = {**self._head(),
                **self._piece(choice.content or "", choice.reasoning,
                              calls([(c.name, c.arguments) for c in choice.tool_calls])),
                **self._logprobs(model, choice.logprobs),
                **self._tail(choice.finish_reason, result.usage, None)}
        return json.dumps(body, ensure_ascii=False).encode()

    async def stream(self, source: Source, model: ChatModel) -> AsyncIterator[str]:
        self.hold.apply()
        first: int | None = None
        pending: list[tuple[str, str]] = []  # calls go out whole, as Ollama sends them
        reason = "stop"
        try:
            async for event in source.events():
                if first is None:
                    first = time.perf_counter_ns()
                match event:
                    case ev.TextDelta(text=text, logprobs=lps) if text or lps:
                        yield json_line({**self._head(), **self._piece(text),
                                         **self._logprobs(model, lps), "done": False})
                    case ev.Logprobs(logprobs=lps) if self.logprobs:
                        yield json_line({**self._head(), **self._piece(),
                                         **self._logprobs(model, lps), "done": False})
                    case ev.ReasoningDelta(text=text) if text:
                        yield json_line({**self._head(), **self._piece("", text),
                                         "done": False})
                    case ev.CallStart(name=name):
                        pending.append((name, ""))
                    case ev.CallArguments(arguments=fragment) if pending:
                        name, args = pending[-1]
                        pending[-1] = (name, args + fragment)
                    case ev.Finish(reason=finish):
                        reason = finish
        except APIError as exc:
            yield stream_error(exc)
            return
        if pending:
            yield json_line({**self._head(), **self._piece("", None, calls(pending)),
                             "done": False})
        yield json_line({**self._head(), **self._piece(), **self._tail(reason, source.usage,
                                                                          first)})
