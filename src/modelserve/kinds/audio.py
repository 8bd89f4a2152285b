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
    ("cancelled", "counter", "Requests stopped because the client went away"),
    ("failed", "counter", "Requests that failed"),
    ("waiting", "gauge", "Requests queued"),
    ("running", "gauge", "Requests running"),
)


def _job_metrics(prefix: str, completed: str, audio: str, work: str) -> tuple[MetricDef, ...]:
    """A speech kind's series, read from its JobQueue's stats (runtimes/job_queue.py)."""
    name = f"modelserve_{prefix}"
    return (
        MetricDef(f"{name}_requests", "counter", completed, "completed"),
        MetricDef(f"{name}_audio_seconds", "counter", f"Seconds of audio {audio}",
                  "audio_seconds"),
        MetricDef(f"{name}_processing_seconds", "counter", f"Seconds spent {work}",
                  "processing_seconds"),
        MetricDef(f"{name}_real_time_factor", "gauge",
                  "Processing seconds per second of audio, over all requests",
                  "real_time_factor"),
        *(MetricDef(f"{name}_{field}", kind, help, field)
          for field, kind, help in _QUEUE_METRICS),
    )


TRANSCRIPTION: ModelKind[TranscriptionModel] = ModelKind(
    name="transcription",
    runtimes={"faster-whisper": WhisperOptions},
    default_runtime="faster-whisper",
    use="speech-to-text (/v1/audio/transcriptions)",
    metrics=_job_metrics("transcription", "Transcriptions completed", "transcribed",
                         "decoding and transcribing"),
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
    metrics=(*_job_metrics("speech", "Speech requests completed", "synthesized",
                           "synthesizing and encoding"),
             MetricDef("modelserve_speech_characters", "counter", "Characters of input spoken",
                       "characters")),
    runtime="modelserve.runtimes.piper:SPEECH_RUNTIME",
    serving="modelserve.fronts.audio:SPEECH_SERVING",
    extra_sources=_voice_config,
)
