"""The chat core's result and events as OpenAI's Response object and its typed event stream
(`event: response.output_text.delta` + `data: {... "sequence_number": n}`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from modelserve.api.errors import APIError
from modelserve.api.responses.convert import new_id
from modelserve.api.responses.protocol import FunctionChoice, ResponsesRequest
from modelserve.api.sampling import reasoning_tokens
from modelserve.chat import events as ev
from modelserve.chat.route import Source
from modelserve.kinds.chat import ChatModel

Keep = Callable[[dict[str, Any]], Awaitable[None]]


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    # The model's own reasoning, whole: `content` (reasoning_text); this server writes no
    # summaries, so `summary` stays empty.
    return {"id": item_id, "type": "reasoning", "summary": [], "status": status,
            "content": [{"type": "reasoning_text", "text": text}] if text else []}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [] if text is None else [text_part(text)]}


def call_item(item_id: str, call_id: str, name: str, arguments: str,
              status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def usage(counts: ev.Usage, reasoning_tokens: int) -> dict[str, Any]:
    return {"input_tokens": counts.prompt_tokens,
            "input_tokens_details": {"cached_tokens": counts.cached_tokens,
                                     "cache_write_tokens": 0},
            "output_tokens": counts.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": counts.total_tokens}


class ResponsesSurface:
    cache_route = "responses"
    media_type = "text/event-stream"

    def __init__(self, req: ResponsesRequest, cache_body: dict[str, Any],
                 keep: Keep | None) -> None:
        self.req = req
        self._cache_body = cache_body
        self.keep = keep  # stores a streamed response once it is whole
        # A fresh id per request, never the cached result's: a cache hit is a new response
        # (and another key's stored one must never be overwritten by it).
        self.id = new_id("resp")
        self.created = int(time.time())
        self.final: dict[str, Any] | None = None  # the whole Response once answered

    def cache_body(self) -> dict[str, Any]:
        return self._cache_body

    def response(self, model: str, output: list[dict[str, Any]], status: str,
                 counts: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Response object, every field the request set echoed."""
        req = self.req
        fmt = req.text.format.model_dump(by_alias=True, exclude_none=True) \
            if req.text is not None and req.text.format is not None else {"type": "text"}
        choice = req.tool_choice
        effort = req.reasoning.effort if req.reasoning is not None else None
        done = status in ("completed", "incomplete")
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": status, "background": False,
            "completed_at": int(time.time()) if done else None, "error": error,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "max_tool_calls": None, "model": model, "output": output,
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id,
            "reasoning": {"effort": effort, "summary": None},
            "service_tier": "default", "store": req.store,
            "temperature": 1.0 if req.temperature is None else req.temperature,
            "text": {"format": fmt, "verbosity": "medium"},
            "tool_choice": choice.model_dump() if isinstance(choice, FunctionChoice)
            else choice or "auto",
            "tools": [t.model_dump(exclude_none=True) for t in req.tools or []],
            "top_p": 1.0 if req.top_p is None else req.top_p, "truncation": "disabled",
            "usage": counts, "user": req.user, "safety_identifier": req.safety_identifier,
            "prompt_cache_key": req.prompt_cache_key, "metadata": req.metadata or {}}

    def answer(self, result: ev.Result, model: ChatModel) -> bytes:
        choice = result.choices[0]
        cut = choice.finish_reason == "length"
        status = "incomplete" if cut else "completed"
        output = []
        if choice.reasoning:
            output.append(reasoning_item(new_id("rs"), choice.reasoning))
        if choice.content or not choice.tool_calls:
            output.append(message_item(new_id("msg"), choice.content or "", status))
        output += [call_item(new_id("fc"), c.id, c.name, c.arguments, status)
                   for c in choice.tool_calls]
        counts = usage(result.usage, reasoning_tokens(model, [choice.reasoning],
                                                     result.usage.completion_tokens))
        self.final = self.response(result.model, output, status, counts)
        return json.dumps(self.final, ensure_ascii=False).encode()

    async def stream(self, source: Source, model: ChatModel) -> AsyncIterator[str]:
        items = _Items()
        yield items.event("response.created",
                          response=self.response(source.model, [], "in_progress"))
        yield items.event("response.in_progress",
                          response=self.response(source.model, [], "in_progress"))
        try:
            async for event in source.events():
                for piece in items.on(event):
                    yield piece
        except APIError as exc:
            error = {"code": exc.code or exc.type, "message": exc.message}
            yield items.event("response.failed", response=self.response(
                source.model, items.output, "failed", error=error))
            return
        status = "incomplete" if items.cut else "completed"
        reasoning = "".join(i["content"][0]["text"] for i in items.output
                            if i["type"] == "reasoning" and i["content"])
        counts = usage(source.usage, reasoning_tokens(model, [reasoning],
                                                     source.usage.completion_tokens))
        self.final = self.response(source.model, items.output, status, counts)
        yield items.event(f"response.{status}", response=self.final)
        if self.keep is not None:
            await self.keep(self.final)


class _Items:
    """The output items of one streamed response, each added, filled and done in turn,
    and the events' sequence numbers (from 0, one per event)."""

    def __init__(self) -> None:
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # items done
        self.item: dict[str, Any] | None = None  # the open one
        self.text = ""  # the open item's text or arguments so far
        self.cut = False

    def event(self, kind: str, **data: Any) -> str:
        body = json.dumps({"type": kind, **data, "sequence_number": self.seq},
                          separators=(",", ":"), ensure_ascii=False)
        self.seq += 1
        return f"event: {kind}\ndata: {body}\n\n"

    def on(self, event: ev.Event) -> list[str]:
        if getattr(event, "index", 0) != 0:
            return []  # one choice: /v1/responses has no `n`
        match event:
            case ev.ReasoningDelta(text=text):
                out = self._open("reasoning", lambda: reasoning_item(new_id("rs"), "",
                                                                     "in_progress"))
                return [*out, self._delta("response.reasoning_text.delta", text)]
            case ev.TextDelta(text=text) if text:
                out = self._open("message", lambda: message_item(new_id("msg"), None,
                                                                 "in_progress"))
                return [*out, self._delta("response.output_text.delta", text)]
            case ev.CallStart(id=call_id, name=name):
                return self._open("function_call", lambda: call_item(
                    new_id("fc"), call_id, name, "", "in_progress"), new=True)
            case ev.CallArguments(arguments=arguments):
                return [self._delta("response.function_call_arguments.delta", arguments)]
            case ev.Finish(reason=reason):
                self.cut = reason == "length"
                out = self._close()
                if not any(i["type"] != "reasoning" for i in self.output):
                    # No text and no call (as ResponsesSurface.answer): one empty message.
                    out += self._open("message", lambda: message_item(
                        new_id("msg"), None, "in_progress")) + self._close()
                return out
        return []

    def _open(self, kind: str, make: Callable[[], dict[str, Any]],
              new: bool = False) -> list[str]:
        if self.item is not None and self.item["type"] == kind and not new:
            return []
        out = self._close()
        self.item, self.text = make(), ""
        return out + self._open_events()

    def _open_events(self) -> list[str]:
        assert self.item is not None
        out = [self.event("response.output_item.added", output_index=len(self.output),
                          item=self.item)]
        part = _part(self.item["type"], "")
        if part is not None:
            out.append(self.event("response.content_part.added", **self._where(), part=part))
        return out

    def _where(self, content: bool = True) -> dict[str, Any]:
        assert self.item is not None
        at: dict[str, Any] = {"item_id": self.item["id"], "output_index": len(self.output)}
        if content and self.item["type"] != "function_call":
            at["content_index"] = 0
        return at

    def _delta(self, kind: str, text: str) -> str:
        self.text += text
        extra: dict[str, Any] = {"logprobs": []} if kind == "response.output_text.delta" else {}
        return self.event(kind, **self._where(), delta=text, **extra)

    def _close(self) -> list[str]:
        item = self.item
        if item is None:
            return []
        kind, text = item["type"], self.text
        status = "incomplete" if self.cut and kind != "reasoning" else "completed"
        out = []
        if kind == "message":
            out += [self.event("response.output_text.done", **self._where(), text=text,
                               logprobs=[]),
                    self.event("response.content_part.done", **self._where(),
                               part=text_part(text))]
            item = message_item(item["id"], text, status)
        elif kind == "reasoning":
            out += [self.event("response.reasoning_text.done", **self._where(), text=text),
                    self.event("response.content_part.done", **self._where(),
                               part=_part(kind, text))]
            item = reasoning_item(item["id"], text)
        else:
            out.append(self.event("response.function_call_arguments.done", **self._where(),
                                  name=item["name"], arguments=text))
            item = {**item, "arguments": text, "status": status}
        out.append(self.event("response.output_item.done", output_index=len(self.output),
                              item=item))
        self.output.append(item)
        self.item, self.text = None, ""
        return out


def _part(kind: str, text: str) -> dict[str, Any] | None:
    if kind == "message":
        return text_part(text)
    return {"type": "reasoning_text", "text": text} if kind == "reasoning" else None


def stream_error(err: APIError) -> str:
    """A stream ended from outside (the drain deadline at shutdown): the Responses `error`
    event, never OpenAI chat's `data: {"error"}`. Its place in the sequence is not known
    out there, so it carries no sequence_number."""
    body = json.dumps({"type": "error", "code": err.code or err.type, "message": err.message,
                       "param": err.param}, separators=(",", ":"), ensure_ascii=False)
    return f"event: error\ndata: {body}\n\n"
