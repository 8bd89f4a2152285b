"""OpenAI wire types of the Audio API (transcriptions, translations, speech). No serving
logic lives here. The transcription forms are multipart: their fields arrive as text and
are parsed by these models like JSON fields."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from modelserve.api.protocol import NullMeansDefault

TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class TranslationRequest(NullMeansDefault):
    """The non-file fields of /v1/audio/translations (to English)."""

    # A field this server does not know is refused by name (include[], known_speaker_names,
    # ...), never dropped: each changes what the client gets back.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1)
    prompt: str | None = Field(None, max_length=4096)
    response_format: TranscriptFormat = "json"
    temperature: float = Field(0.0, ge=0, le=1)


class TranscriptionRequest(TranslationRequest):
    """The non-file fields of /v1/audio/transcriptions."""

    language: str | None = Field(None, min_length=2, max_length=8,
                                 description="ISO-639-1 code, e.g. en; default: detected")
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=list, alias="timestamp_granularities[]")
    stream: bool = False
    # "auto" (OpenAI: voice-activity detection picks the chunks) or {"type": "server_vad"}:
    # both turn on Silero VAD, which skips the silences.
    chunking_strategy: Literal["auto", "server_vad"] | None = None

    @field_validator("language")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None


class SpeechRequest(NullMeansDefault):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, json_schema_extra={"pattern": r"[^\s\x1c-\x1f\x85]"})
    voice: str = Field(min_length=1)
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    # Piper voices take no style prompt: accepted and ignored, and the answer says so in
    # its X-Modelserve-Note header.
    instructions: str | None = Field(None, max_length=4096)
    stream_format: Literal["audio", "sse"] = "audio"

    @field_validator("input")
    @classmethod
    def _input_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input must not be empty")
        return value
