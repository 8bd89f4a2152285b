"""POST /v1/audio/transcriptions and /v1/audio/translations (multipart, as OpenAI's).

The upload goes to the model's worker, which decodes it and runs Whisper; the segments
come back as they are made: collected for json, text, srt, vtt and verbose_json, or sent
on as `transcript.text.delta` events with `stream: true`. A client that leaves stops its
job at the next segment.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from modelserve.api import leases, pipeline
from modelserve.api.caching import NO_EFFECT, CachePlan
from modelserve.api.errors import APIError, bad_request, queue_full, stream_failure
from modelserve.api.openapi import error_responses, form_schema
from modelserve.api.protocol_audio import TranscriptionRequest, TranslationRequest
from modelserve.api.streams import event_stream, sse_json, unless_disconnected
from modelserve.audio.jobs import BadAudio, TranscriptionJob
from modelserve.audio.subtitles import srt, vtt
from modelserve.config_sections import InputLimits
from modelserve.failures import QueueFull
from modelserve.kinds.audio import TRANSCRIPTION, TranscriptionModel

router = APIRouter()

MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json",
               "text": "text/plain; charset=utf-8", "srt": "text/plain; charset=utf-8",
               "vtt": "text/vtt; charset=utf-8"}
Segments = list[dict[str, Any]]
Task = Literal["transcribe", "translate"]


class TranscriptionRoute(pipeline.Route[TranslationRequest, TranscriptionModel]):
    """Both routes: a translation is a transcription whose task is `translate`."""

    cache_route = "transcriptions"

    def __init__(self, req: TranslationRequest, request: Request, upload: UploadFile,
                 task: Task) -> None:
        super().__init__(req, request)
        self.upload, self.task = upload, task
        self.full = req if isinstance(req, TranscriptionRequest) else None
        self.audio = b""

    def check_limits(self, limits: InputLimits) -> None:
        full = self.full
        if full is None:
            return
        if full.timestamp_granularities and self.req.response_format != "verbose_json":
            raise bad_request("timestamp_granularities needs response_format verbose_json.",
                              param="timestamp_granularities[]")
        if full.stream and self.req.response_format not in ("json", "text"):
            raise bad_request("A streamed transcript is text: use response_format json or "
                              "text with stream.", param="stream")

    async def acquire(self) -> TranscriptionModel:
        return await leases.acquire_kind(self.request, self.req.model, TRANSCRIPTION)

    async def count(self, runtime: TranscriptionModel) -> tuple[int, int]:
        size = self.upload.size or 0
        if size > runtime.max_file_bytes:
            raise APIError(413, f"The audio file is {size} bytes, over this model's limit of "
                           f"{runtime.max_file_bytes}.", param="file", code="file_too_large")
        language = self.full.language if self.full else None
        if language is not None and language not in runtime.languages:
            raise bad_request(f"Unsupported language {language!r}: this model knows "
                              f"{', '.join(runtime.languages[:20])}"
                              f"{' ...' if len(runtime.languages) > 20 else ''}.",
                              param="language", code="invalid_language")
        self.audio = await self.upload.read()
        return 0, 0

    def deterministic(self) -> bool:
        # Temperature 0 is greedy decoding (the fallback's higher temperatures only come in
        # for windows that fail its checks); a stream is answered live.
        return self.req.temperature == 0 and not (self.full and self.full.stream)

    def cache_body(self) -> dict[str, Any]:
        body = self.req.model_dump(mode="json", exclude=NO_EFFECT)
        return {**body, "task": self.task, "file": hashlib.sha256(self.audio).hexdigest()}

    def replay(self, entry: bytes, runtime: TranscriptionModel) -> Response:
        return Response(entry, media_type=MEDIA_TYPES[self.req.response_format])

    def job(self) -> TranscriptionJob:
        full = self.full
        return TranscriptionJob(
            audio=self.audio, task=self.task,
            language=full.language if full else None, prompt=self.req.prompt,
            temperature=self.req.temperature,
            words=bool(full and "word" in full.timestamp_granularities),
            vad=bool(full and full.chunking_strategy))

    async def respond(self, runtime: TranscriptionModel, plan: CachePlan) -> Response:
        segments = runtime.transcribe(self.job())
        info = await _first(self.request, segments)
        if self.full is not None and self.full.stream:
            return event_stream(_events(segments))
        items = await unless_disconnected(self.request, _rest(segments), [])
        body = render(self.req, self.task, info, items)
        await plan.store(body)
        return Response(body, media_type=MEDIA_TYPES[self.req.response_format])


async def _first(request: Request, segments: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The audio's facts, which come first: a bad upload or a full queue is refused here,
    before any answer starts."""
    try:
        first = await unless_disconnected(request, anext(segments), [])
    except BadAudio as exc:
        raise bad_request(str(exc), param="file", code=exc.code) from None
    except QueueFull:
        raise queue_full("transcriptions") from None
    info: dict[str, Any] = first["info"]
    return info


async def _rest(segments: AsyncIterator[dict[str, Any]]) -> Segments:
    return [segment async for segment in segments]


def transcript(segments: Segments) -> str:
    return "".join(s["text"] for s in segments).strip()


def render(req: TranslationRequest, task: str, info: dict[str, Any],
           segments: Segments) -> bytes:
    fmt = req.response_format
    text = transcript(segments)
    usage = {"type": "duration", "seconds": math.ceil(info["duration"])}
    if fmt == "text":
        return (text + "\n").encode()
    if fmt == "srt":
        return srt(segments).encode()
    if fmt == "vtt":
        return vtt(segments).encode()
    if fmt == "json":
        return json.dumps({"text": text, "usage": usage}, ensure_ascii=False).encode()
    granularities = getattr(req, "timestamp_granularities", []) or ["segment"]
    body: dict[str, Any] = {"task": task, "language": info["language"],
                            "duration": info["duration"], "text": text}
    if "segment" in granularities:
        body["segments"] = [{k: v for k, v in s.items() if k != "words"} for s in segments]
    if "word" in granularities:
        body["words"] = [w for s in segments for w in s.get("words", [])]
    body["usage"] = usage
    return json.dumps(body, ensure_ascii=False).encode()


async def _events(segments: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """OpenAI's streamed transcript: a delta per segment, then the whole text."""
    pieces: list[str] = []
    try:
        async for segment in segments:
            delta = segment["text"].lstrip() if not pieces else segment["text"]
            pieces.append(delta)
            if delta:
                yield sse_json({"type": "transcript.text.delta", "delta": delta})
    except Exception as exc:
        yield stream_failure(exc, "Transcription").sse()
        return
    yield sse_json({"type": "transcript.text.done", "text": "".join(pieces).strip()})


async def _form(request: Request, model: type[TranslationRequest]
                ) -> tuple[TranslationRequest, UploadFile, Any]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("This endpoint takes multipart/form-data: a 'file' and form fields.",
                          param="file")
    form = await request.form()
    fields: dict[str, Any] = {}
    files: list[UploadFile] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "file":
                raise bad_request(f"Unexpected file field '{key}'.", param=key)
            files.append(value)
        elif key in ("timestamp_granularities[]", "timestamp_granularities"):
            fields.setdefault("timestamp_granularities[]", []).append(value)
        elif key.startswith("chunking_strategy"):
            fields["chunking_strategy"] = _chunking(key, value)
        else:
            fields[key] = value
    try:
        if len(files) != 1:
            raise bad_request("Send one audio 'file'.", param="file")
        try:
            req = model.model_validate(fields)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
    except BaseException:
        await form.close()
        raise
    return req, files[0], form


def _chunking(key: str, value: str) -> str:
    """`chunking_strategy` as the SDK sends it: "auto", a JSON object, or form keys such as
    chunking_strategy[type]. Only its type is read; VAD tuning fields are refused by name."""
    if key == "chunking_strategy" and value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise bad_request("chunking_strategy is not valid JSON.",
                              param="chunking_strategy") from None
        extra = set(parsed) - {"type"} if isinstance(parsed, dict) else set()
        if extra:
            raise bad_request(f"chunking_strategy.{sorted(extra)[0]} is not supported: the "
                              "VAD runs with its defaults.", param="chunking_strategy")
        return str(parsed.get("type")) if isinstance(parsed, dict) else value
    if key in ("chunking_strategy", "chunking_strategy[type]"):
        return value
    raise bad_request(f"{key} is not supported: the VAD runs with its defaults.", param=key)


async def _serve(request: Request, model: type[TranslationRequest], task: Task) -> Response:
    req, upload, form = await _form(request, model)
    try:
        return await pipeline.serve(TranscriptionRoute(req, request, upload, task))
    finally:
        await form.close()


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The transcript in `response_format`",
          "content": {"application/json": {}, "text/plain": {}, "text/event-stream": {}}},
    **error_responses(404, 413, 429, 503)}


@router.post("/v1/audio/transcriptions", response_class=Response, responses=_RESPONSES,
             openapi_extra={"requestBody": form_schema(TranscriptionRequest, {"file": True})})
async def create_transcription(request: Request) -> Response:
    return await _serve(request, TranscriptionRequest, "transcribe")


@router.post("/v1/audio/translations", response_class=Response, responses=_RESPONSES,
             openapi_extra={"requestBody": form_schema(TranslationRequest, {"file": True})})
async def create_translation(request: Request) -> Response:
    return await _serve(request, TranslationRequest, "translate")
