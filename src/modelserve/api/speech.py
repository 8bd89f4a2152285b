"""POST /v1/audio/speech: text to audio, sent while it is synthesized.

The worker synthesizes sentence by sentence and encodes as it goes, so the first audio
bytes leave before the whole text is spoken: as a chunked body (`stream_format: audio`,
the default) or as `speech.audio.delta` events (`stream_format: sse`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelserve.api import leases, pipeline
from modelserve.api.caching import CachePlan
from modelserve.api.errors import bad_request, queue_full, stream_failure
from modelserve.api.openapi import error_responses
from modelserve.api.protocol_audio import SpeechRequest
from modelserve.api.streams import event_stream, sse_json, unless_disconnected
from modelserve.audio.jobs import SpeechJob
from modelserve.config_sections import InputLimits
from modelserve.failures import QueueFull
from modelserve.kinds.audio import SPEECH, SpeechModel

router = APIRouter()

# OpenAI's media types; `pcm` is raw 24 kHz 16-bit little-endian mono.
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
               "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
INSTRUCTIONS_NOTE = "instructions are ignored: Piper voices take no style prompt"


class SpeechRoute(pipeline.Route[SpeechRequest, SpeechModel]):
    cache_route = "speech"

    def check_limits(self, limits: InputLimits) -> None:
        pass  # the model's own cap on `input` is checked in `count`

    async def acquire(self) -> SpeechModel:
        return await leases.acquire_kind(self.request, self.req.model, SPEECH)

    async def count(self, runtime: SpeechModel) -> tuple[int, int]:
        req = self.req
        if len(req.input) > runtime.max_input_chars:
            raise bad_request(f"input is {len(req.input)} characters, over this model's limit "
                              f"of {runtime.max_input_chars}.", param="input",
                              code="string_above_max_length")
        if req.voice not in runtime.voices:
            raise bad_request(f"Unknown voice {req.voice!r}: this model speaks with "
                              f"{', '.join(runtime.voices)}.", param="voice",
                              code="invalid_voice")
        return 0, 0

    def deterministic(self) -> bool:
        return False  # Piper samples noise: the same text never gives the same bytes

    async def respond(self, runtime: SpeechModel, plan: CachePlan) -> Response:
        req = self.req
        chunks = runtime.speak(SpeechJob(text=req.input, response_format=req.response_format,
                                         voice=req.voice, speed=req.speed))
        try:
            first = await unless_disconnected(self.request, anext(chunks), [])
        except QueueFull:
            raise queue_full("speech requests") from None
        headers = {"X-Modelserve-Note": INSTRUCTIONS_NOTE} if req.instructions else {}
        if req.stream_format == "sse":
            response = event_stream(_events(first, chunks, len(req.input)))
            response.headers.update(headers)
            return response
        return StreamingResponse(_audio(first, chunks), headers=headers,
                                 media_type=MEDIA_TYPES[req.response_format])


async def _audio(first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in chunks:  # a failure now can only cut the body short
        yield chunk


async def _events(first: bytes, chunks: AsyncIterator[bytes], characters: int
                  ) -> AsyncIterator[str]:
    try:
        yield _delta(first)
        async for chunk in chunks:
            if chunk:
                yield _delta(chunk)
    except Exception as exc:
        yield stream_failure(exc, "Speech synthesis").sse()
        return
    # Piper reads characters, not tokens: usage counts the input's characters.
    yield sse_json({"type": "speech.audio.done",
                    "usage": {"input_tokens": characters, "output_tokens": 0,
                              "total_tokens": characters}})


def _delta(chunk: bytes) -> str:
    return sse_json({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})


@router.post("/v1/audio/speech", response_class=Response, responses={
    200: {"description": "The audio, streamed while it is synthesized",
          "content": {media: {"schema": {"type": "string", "format": "binary"}}
                      for media in MEDIA_TYPES.values()}},
    **error_responses(404, 429, 503)})
async def create_speech(req: SpeechRequest, request: Request) -> Response:
    return await pipeline.serve(SpeechRoute(req, request))
