"""Speech models as the API process holds them while Whisper or Piper runs in their worker:
what the routes check a request against, and the worker's streams as async iterators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from modelserve.audio.jobs import SpeechJob, TranscriptionJob
from modelserve.kinds.audio import SpeechModel, TranscriptionModel
from modelserve.kinds.wiring import KindServing
from modelserve.worker.transport import Worker

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelserve.config import ModelSpec


class TranscriptionFront:
    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        self.worker = worker
        self.created: int = info["created"]
        self.multilingual: bool = info["multilingual"]
        self.languages: list[str] = info["languages"]
        self.max_file_bytes: int = info["max_file_bytes"]

    def card(self) -> dict[str, Any]:
        return {"multilingual": self.multilingual}

    def close(self) -> None:
        pass  # nothing held here but Python objects

    def transcribe(self, job: TranscriptionJob) -> AsyncIterator[dict[str, Any]]:
        return self.worker.stream("transcribe", job)


class SpeechFront:
    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        self.worker = worker
        self.created: int = info["created"]
        self.max_input_chars: int = info["max_input_chars"]
        self.voices: list[str] = info["voices"]

    def card(self) -> dict[str, Any]:
        return {"voices": self.voices}

    def close(self) -> None:
        pass

    def speak(self, job: SpeechJob) -> AsyncIterator[bytes]:
        return self.worker.stream("speak", job)


def _transcription_routers() -> Sequence[APIRouter]:
    from modelserve.api import transcriptions

    return (transcriptions.router,)


def _speech_routers() -> Sequence[APIRouter]:
    from modelserve.api import speech

    return (speech.router,)


TRANSCRIPTION_SERVING: KindServing[TranscriptionModel] = KindServing(
    front=TranscriptionFront, routers=_transcription_routers)
SPEECH_SERVING: KindServing[SpeechModel] = KindServing(
    front=SpeechFront, routers=_speech_routers)
