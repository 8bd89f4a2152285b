"""The two speech kinds: speech-to-text (faster-whisper behind /v1/audio/transcriptions and
/translations) and text-to-speech (Piper voices behind /v1/audio/speech)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modelserve.kinds.base import MetricDef, ModelKind
from modelserve.kinds.options import PiperOptions, WhisperOptions

if TYPE_CHECKING:
    from modelserve.audio.jobs import SpeechJob, TranscriptionJob


class TranscriptionModel(Protocol):
    """What the transcription routes hold of a speech-to-text model (fronts/audio.py)."""

    created: int
    multilingual: bool
    languages: list[str]
    max_file_bytes: int

    def card(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def transcribe(self, job: TranscriptionJob) -> AsyncIterator[dict[str, Any]]:
        """The audio's facts ({"info": ...}) first, then its segments as they are decoded;
        raises BadAudio for audio it cannot use and QueueFull when too many wait. Leaving
        the iteration early stops the job at its next segment."""


class SpeechModel(Protocol):
    """What /v1/audio/speech holds of a text-to-speech model (fronts/audio.py)."""

    created: int
    max_input_chars: int
    voices: list[str]

    def card(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def speak(self, job: SpeechJob) -> AsyncIterator[bytes]:
        """Encoded audio, a chunk per sentence as it is synthesized."""


_QUEUE_METRICS: tuple[tuple[str, Literal["gauge", "counter"], str], ...] = (
    ("cancelled", "counter", "requests stopped because the client went away"),
    ("failed", "counter", "requests that failed"),
    ("waiting", "gauge", "requests queued"),
    ("running", "gauge", "requests running"),
)


def _queue_metrics(prefix: str) -> tuple[MetricDef, ...]:
    return tuple(MetricDef(f"modelserve_{prefix}_{field}", kind, help[0].upper() + help[1:],
                           field) for field, kind, help in _QUEUE_METRICS)


TRANSCRIPTION: ModelKind[TranscriptionModel] = ModelKind(
    name="transcription",
    runtimes={"faster-whisper": WhisperOptions},
    default_runtime="faster-whisper",
    use="speech-to-text (/v1/audio/transcriptions)",
    metrics=(
        MetricDef("modelserve_transcription_requests", "counter",
                  "Transcriptions completed", "completed"),
        MetricDef("modelserve_transcription_audio_seconds", "counter",
                  "Seconds of audio transcribed", "audio_seconds"),
        MetricDef("modelserve_transcription_processing_seconds", "counter",
                  "Seconds spent decoding and transcribing", "processing_seconds"),
        MetricDef("modelserve_transcription_real_time_factor", "gauge",
                  "Processing seconds per second of audio, over all transcriptions",
                  "real_time_factor"),
        *_queue_metrics("transcription"),
    ),
    runtime="modelserve.runtimes.whisper:TRANSCRIPTION_RUNTIME",
    serving="modelserve.fronts.audio:TRANSCRIPTION_SERVING",
)


def _voice_config(options: Any) -> list[tuple[str, object]]:
    return [("options.config", options.config)]


SPEECH: ModelKind[SpeechModel] = ModelKind(
    name="speech",
    runtimes={"piper": PiperOptions},
    default_runtime="piper",
    use="text-to-speech (/v1/audio/speech)",
    metrics=(
        MetricDef("modelserve_speech_requests", "counter", "Speech requests completed",
                  "completed"),
        MetricDef("modelserve_speech_characters", "counter", "Characters of input spoken",
                  "characters"),
        MetricDef("modelserve_speech_audio_seconds", "counter", "Seconds of audio synthesized",
                  "audio_seconds"),
        MetricDef("modelserve_speech_processing_seconds", "counter",
                  "Seconds spent synthesizing and encoding", "processing_seconds"),
        MetricDef("modelserve_speech_real_time_factor", "gauge",
                  "Processing seconds per second of audio, over all requests",
                  "real_time_factor"),
        *_queue_metrics("speech"),
    ),
    runtime="modelserve.runtimes.piper:SPEECH_RUNTIME",
    serving="modelserve.fronts.audio:SPEECH_SERVING",
    extra_sources=_voice_config,
)
