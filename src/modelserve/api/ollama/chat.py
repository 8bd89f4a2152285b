"""POST /api/chat and /api/generate: Ollama's requests as turns of the chat core, answered
by surface.py. An empty request (no messages, no prompt) is Ollama's idiom for "load the
model" (or, with keep_alive 0, "unload it")."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from modelserve.api import leases
from modelserve.api.errors import bad_request
from modelserve.api.ollama.common import ModelHold, now_iso, ollama_router, registry_of, resolve
from modelserve.api.ollama.models import capabilities
from modelserve.api.ollama.options import sampling
from modelserve.api.ollama.protocol import (
    ChatMessage,
    ChatRequest,
    Format,
    GenerateRequest,
    Generative,
    OllamaError,
    Think,
)
from modelserve.api.ollama.surface import AnswerField, OllamaSurface
from modelserve.api.openapi import error_responses
from modelserve.chat.route import serve
from modelserve.chat.turn import (
    Image,
    Message,
    Names,
    OutputFormat,
    Part,
    Text,
    Tool,
    ToolCall,
    Turn,
)
from modelserve.kinds.chat import CHAT

router = ollama_router()

ERRORS = error_responses(400, 404, 429, 503, model=OllamaError)
NDJSON: dict[int | str, dict[str, Any]] = {200: {
    "description": "One JSON object, or NDJSON lines when streamed",
    "content": {"application/json": {}, "application/x-ndjson": {}}}}


@router.post("/api/chat", response_model=None, responses={**NDJSON, **ERRORS})
async def chat(req: ChatRequest, request: Request) -> Response:
    name = resolve(request, req.model)
    hold = ModelHold(request, name, req.keep_alive)
    _check_think(request, req, name)
    if not req.messages:
        return await _load(request, req.model, name, hold, "message")
    turn = _turn(req, name, [_message(m, f"messages[{i}]") for i, m in enumerate(req.messages)])
    turn.tools = [Tool(t.function.name, t.function.description,
                       t.function.parameters or {"type": "object", "properties": {}},
                       f"tools[{i}].function.parameters")
                  for i, t in enumerate(req.tools or [])]
    _link_results(turn.messages)
    return await _serve(turn, request, req, name, hold, "message")


@router.post("/api/generate", response_model=None, responses={**NDJSON, **ERRORS})
async def generate(req: GenerateRequest, request: Request) -> Response:
    name = resolve(request, req.model)
    hold = ModelHold(request, name, req.keep_alive)
    _check_think(request, req, name)
    for field, why in (("suffix", "fill-in-the-middle is not supported by this server"),
                       ("template", "this server renders prompts with the model's own "
                                    "template (or sends them raw, with \"raw\": true)"),
                       ("context", "this server keeps no token context between requests: "
                                   "send the conversation to /api/chat instead")):
        if getattr(req, field):
            raise bad_request(f"{field}: {why}.", param=field)
    if not req.prompt and not req.images:
        return await _load(request, req.model, name, hold, "response")
    if req.raw:
        for field in ("system", "images"):
            if getattr(req, field):
                raise bad_request(f"{field} cannot be used with raw: a raw prompt goes to the "
                                  "model as it is, with no template to place it.", param=field)
    messages = [Message("system", req.system, "system")] if req.system else []
    prompt = req.prompt or ""
    content: str | list[Part] = [Text(prompt, "prompt"), *_images(req.images, "images")] \
        if req.images else prompt
    messages.append(Message("user", content, "prompt"))
    turn = _turn(req, name, messages)
    turn.names.messages = turn.names.budget = "prompt"
    if req.raw:
        turn.raw_prompt = prompt
    return await _serve(turn, request, req, name, hold, "response")


# -- request -> turn -------------------------------------------------------------------------


def _check_think(request: Request, req: Generative, name: str) -> None:
    """Thinking asked of a model whose template has no thinking is refused, as Ollama does
    (the answer would come without thoughts, and the client would not know why)."""
    if req.think is None or req.think is False:
        return
    entry = registry_of(request).entries[name]
    if entry.spec.kind == "chat" and "thinking" not in capabilities(entry):
        raise bad_request(f'"{req.model}" does not support thinking', param="think")


def _turn(req: Generative, name: str, messages: list[Message]) -> Turn:
    if req.top_logprobs and not req.logprobs:
        raise bad_request("top_logprobs needs \"logprobs\": true.", param="top_logprobs")
    turn = Turn(model=name, messages=messages, sampling=sampling(req.options),
                output=_format(req.format), variables=_thinking(req.think),
                names=Names(max_tokens="options.num_predict"))
    turn.sampling.logprobs = req.top_logprobs if req.logprobs else None
    return turn


def _format(fmt: Format) -> OutputFormat | None:
    if fmt == "json":
        return OutputFormat("json_object", where="format")
    if isinstance(fmt, dict):
        return OutputFormat("json_schema", schema=fmt, where="format")
    return None  # "" or absent: free text


def _thinking(think: Think) -> dict[str, Any]:
    """`think` as the template variables thinking templates read (Qwen3's enable_thinking,
    gpt-oss's reasoning_effort)."""
    if think is None:
        return {}
    if isinstance(think, bool):
        return {"enable_thinking": think}
    return {"enable_thinking": True, "reasoning_effort": think}


_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"BM", "image/bmp"))


def _media_type(data: str) -> str:
    """The image's type from its first bytes (Ollama sends bare base64, no type)."""
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4))
    except (binascii.Error, ValueError):
        return "image/png"  # the image decoder will say what is wrong with it
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), "image/png")


def _images(images: list[str] | None, where: str) -> list[Image]:
    out = []
    for j, data in enumerate(images or []):
        data = data.strip()
        if data.startswith("data:"):  # some clients send data URLs: take them as they are
            out.append(Image(data, f"{where}[{j}]"))
        else:
            out.append(Image(f"data:{_media_type(data)};base64,{data}", f"{where}[{j}]"))
    return out


def _message(msg: ChatMessage, where: str) -> Message:
    text = msg.content or ""
    content: str | list[Part] = [Text(text, f"{where}.content"),
                                 *_images(msg.images, f"{where}.images")] \
        if msg.images else text
    calls = [ToolCall(f"call_{where}_{j}", c.function.name, json.dumps(c.function.arguments))
             for j, c in enumerate(msg.tool_calls or [])]
    return Message(msg.role, content, where, tool_calls=calls, name=msg.tool_name)


def _link_results(messages: list[Message]) -> None:
    """Ollama's tool results name the tool, not the call: each takes the id of the earliest
    unanswered call to that tool (or the earliest unanswered call), for templates that
    pair them by id. A result with no call before it (Ollama takes those too) gets an id of
    its own."""
    open_calls: list[ToolCall] = []
    for msg in messages:
        if msg.role == "assistant" and msg.tool_calls:
            open_calls = list(msg.tool_calls)
        elif msg.role == "tool" and open_calls:
            call = next((c for c in open_calls if c.name == msg.name), open_calls[0])
            open_calls.remove(call)
            msg.tool_call_id = call.id
            msg.name = msg.name or call.name
        elif msg.role == "tool":
            msg.tool_call_id = f"call_{msg.where}"


# -- serving ---------------------------------------------------------------------------------


async def _serve(turn: Turn, request: Request, req: Generative, name: str,
                 hold: ModelHold, field: AnswerField) -> Response:
    # What changes the answer: the request less the stream and keep-alive, under the model's
    # own name (so `smol` and `smol:latest` share cached answers).
    body = {**req.model_dump(mode="json", exclude={"stream", "keep_alive"}), "model": name}
    surface = OllamaSurface(field, req.model, body, hold, req.logprobs)
    return await serve(turn, request, surface, req.stream)


async def _load(request: Request, model: str, name: str, hold: ModelHold,
                field: AnswerField) -> Response:
    """Load the model and answer done ("load"), or with keep_alive 0 let it go ("unload")."""
    started = time.perf_counter_ns()
    if hold.seconds == 0:
        # The reaper unloads it once idle, its requests in flight first. One not loaded is
        # left alone: the keep-alive would outlive the unload it asked for.
        if registry_of(request).entries[name].current is not None:
            hold.apply()
        reason = "unload"
    else:
        await leases.acquire_kind(request, name, CHAT)
        hold.apply()
        reason = "load"
    piece: dict[str, Any] = {"message": {"role": "assistant", "content": ""}} \
        if field == "message" else {"response": ""}
    return JSONResponse({"model": model, "created_at": now_iso(), **piece, "done": True,
                         "done_reason": reason,
                         "total_duration": time.perf_counter_ns() - started,
                         "load_duration": hold.load_ns()})
