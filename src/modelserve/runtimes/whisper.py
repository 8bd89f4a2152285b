"""Speech-to-text on faster-whisper (CTranslate2 Whisper models), in the model's worker.

Each transcription decodes its upload (audio/decode.py) and runs Whisper on a thread of
the model's JobQueue; segments stream back as Whisper finishes them, so a streamed
transcript starts before the audio is done and a client that leaves stops the job at the
next segment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from modelserve.audio.decode import RATE, decode
from modelserve.audio.jobs import TranscriptionJob
from modelserve.config import ModelSpec
from modelserve.kinds.options import WhisperOptions
from modelserve.kinds.wiring import KindRuntime
from modelserve.runtimes.job_queue import JobQueue, JobStats

logger = logging.getLogger(__name__)

# OpenAI's rule for temperature 0: start greedy and raise the temperature when a window's
# output fails the compression-ratio or log-probability checks (faster-whisper's fallback).
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SEED = 1234


def _language_names() -> dict[str, str]:
    try:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES
    except ImportError:  # the names are a nicety of verbose_json; codes still work
        return {}
    return dict(LANGUAGES)


class WhisperRuntime:
    def __init__(self, spec: ModelSpec) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        opts = spec.options_as(WhisperOptions)
        started = time.monotonic()
        directory = spec.resolve_source()
        device = opts.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.options = opts
        self._ct2 = ctranslate2
        compute = opts.compute_type
        if compute == "auto":  # int8 on CPU: ~2-3x float32's speed, same words on tiny.en
            compute = "int8" if device == "cpu" else "float16"
        # str(): ctranslate2 refuses a Path. local_files_only: a directory, never the hub.
        self.model = WhisperModel(str(directory), device=device, compute_type=compute,
                                  cpu_threads=opts.threads or 0, num_workers=opts.concurrency,
                                  local_files_only=True)
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = list(self.model.supported_languages)
        self.names = _language_names()
        self.jobs = JobQueue(f"whisper-{spec.name}", opts.concurrency, opts.max_waiting)
        self.created = int(time.time())
        logger.info("loaded %s (Whisper, %s, %s) from %s in %.2fs", spec.name,
                    "multilingual" if self.multilingual else "English-only", device,
                    directory, time.monotonic() - started)

    def describe(self) -> dict[str, Any]:
        """What the API process's front needs (fronts/audio.py)."""
        return {"created": self.created, "multilingual": self.multilingual,
                "languages": self.languages, "max_file_bytes": self.options.max_file_bytes}

    async def transcribe(self, job: TranscriptionJob) -> AsyncIterator[dict[str, Any]]:
        """{"info": {...}} first, then each segment as a verbose_json segment."""
        async for item in self.jobs.run(lambda: self._segments(job)):
            yield item

    def _segments(self, job: TranscriptionJob) -> Iterator[dict[str, Any]]:
        audio = decode(job.audio, self.options.max_duration_seconds)
        seconds = audio.size / RATE
        # An English-only model hears English and writes English: a translation to English
        # is its transcription.
        task = job.task if self.multilingual else "transcribe"
        temperature: float | tuple[float, ...] = job.temperature or FALLBACK
        if not job.temperature:
            # The fallback samples (a window whose text compresses too well, such as
            # repeated speech, is decoded again at 0.2, 0.4, ...): seeded, the same upload
            # gives the same transcript, as a cached one must (with `concurrency: 1`; jobs
            # running side by side share CTranslate2's generator).
            self._ct2.set_random_seed(SEED)
        segments, info = self.model.transcribe(
            audio, language=job.language, task=task, initial_prompt=job.prompt or None,
            temperature=temperature, beam_size=self.options.beam_size,
            word_timestamps=job.words, vad_filter=job.vad or self.options.vad_filter)
        language = "english" if task == "translate" else \
            self.names.get(info.language, info.language)
        yield {"info": {"language": language, "duration": round(seconds, 3)}}
        for index, segment in enumerate(segments):
            item: dict[str, Any] = {
                "id": index, "seek": segment.seek, "start": round(segment.start, 3),
                "end": round(segment.end, 3), "text": segment.text,
                "tokens": list(segment.tokens), "temperature": segment.temperature,
                "avg_logprob": segment.avg_logprob,
                "compression_ratio": segment.compression_ratio,
                "no_speech_prob": segment.no_speech_prob}
            if segment.words is not None:
                item["words"] = [{"word": w.word, "start": round(w.start, 3),
                                  "end": round(w.end, 3)} for w in segment.words]
            yield item
        self.jobs.count(seconds)

    def close(self) -> None:
        self.jobs.close()


def _describe(runtime: WhisperRuntime) -> dict[str, Any]:
    return runtime.describe()


def _stats(runtime: WhisperRuntime) -> JobStats:
    return runtime.jobs.snapshot()


TRANSCRIPTION_RUNTIME = KindRuntime(build=WhisperRuntime, describe=_describe, stats=_stats)
