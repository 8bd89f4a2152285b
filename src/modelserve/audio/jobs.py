"""The requests the speech kinds' workers run, as plain data that crosses the worker pipe,
and the one failure they share: audio that cannot be used (a 400 naming `file`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class BadAudio(ValueError):
    """Audio that cannot be transcribed: not audio, truncated, empty, too long. `code` is
    the error code the API answers with."""

    def __init__(self, message: str, code: str = "invalid_audio") -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[type[BadAudio], tuple[str, str]]:
        return (BadAudio, (str(self), self.code))


@dataclass
class TranscriptionJob:
    audio: bytes  # the uploaded file, any container PyAV reads
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None  # None: detected
    prompt: str | None = None
    temperature: float = 0.0  # 0: start greedy, raise on failure (OpenAI's rule)
    words: bool = False  # word timestamps
    vad: bool = False  # skip silence (Silero VAD)


@dataclass
class SpeechJob:
    text: str
    response_format: str = "mp3"
    voice: str | None = None  # a name the model lists; None: its default speaker
    speed: float = 1.0
