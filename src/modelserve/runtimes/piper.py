"""Text-to-speech with Piper voices on onnxruntime, in the model's worker.

Each request is split into sentences; each sentence is synthesized (runtimes/piper_voice.py)
and encoded (audio/encode.py) on a thread of the model's JobQueue and sent at once, so the
first audio reaches the client while the rest of the text is still being spoken.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from modelserve.audio.encode import AudioEncoder
from modelserve.audio.jobs import SpeechJob
from modelserve.audio.phonemes import PROGRAM, EspeakMissing, split_sentences
from modelserve.config import ModelSpec
from modelserve.kinds.options import PiperOptions
from modelserve.kinds.wiring import KindRuntime
from modelserve.runtimes.job_queue import JobQueue, JobStats
from modelserve.runtimes.piper_voice import PiperVoice
from modelserve.sources import ConfigError

logger = logging.getLogger(__name__)

# OpenAI's voice names: an unchanged client sends one of these, and hears this model's
# default speaker unless `options.voices` maps the name to another.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse", "marin", "cedar")


def voice_table(speakers: dict[str, int], configured: dict[str, str | int]
                ) -> dict[str, int | None]:
    """Every voice name a request may send -> the speaker id it speaks with (None: the
    voice file's only or default speaker)."""
    table: dict[str, int | None] = {name: None for name in OPENAI_VOICES}
    table.update(speakers)
    for name, speaker in configured.items():
        if isinstance(speaker, int):
            if speakers and speaker not in speakers.values():
                raise ConfigError(f"voice {name!r}: no speaker id {speaker} in this voice")
            table[name] = speaker if speakers else None
        elif speaker in speakers:
            table[name] = speakers[speaker]
        else:
            raise ConfigError(f"voice {name!r}: no speaker {speaker!r} in this voice "
                              f"(it has {', '.join(speakers) or 'one unnamed speaker'})")
    return table


class PiperRuntime:
    def __init__(self, spec: ModelSpec) -> None:
        opts = spec.options_as(PiperOptions)
        started = time.monotonic()
        if shutil.which(PROGRAM) is None:  # fail the load, not every request after it
            raise EspeakMissing()
        model = spec.resolve_source()
        source = opts.config
        assert not isinstance(source, str)
        config = source.resolve() if source is not None else Path(f"{model}.json")
        if not config.exists():
            raise ConfigError(f"no voice config {config.name} beside {model.name}: name it "
                              "with options.config")
        self.options = opts
        self.voice = PiperVoice(model, config, opts.threads)
        self.voices = voice_table(self.voice.speakers, opts.voices)
        self.jobs = JobQueue(f"piper-{spec.name}", opts.concurrency, opts.max_waiting)
        self.created = int(time.time())
        logger.info("loaded %s (Piper, %d Hz, %d speakers) from %s in %.2fs", spec.name,
                    self.voice.sample_rate, max(1, len(self.voice.speakers)), model,
                    time.monotonic() - started)

    def describe(self) -> dict[str, Any]:
        """What the API process's front needs (fronts/audio.py)."""
        return {"created": self.created, "max_input_chars": self.options.max_input_chars,
                "voices": sorted(self.voices)}

    async def speak(self, job: SpeechJob) -> AsyncIterator[bytes]:
        async for chunk in self.jobs.run(lambda: self._chunks(job)):
            yield chunk

    def _chunks(self, job: SpeechJob) -> Iterator[bytes]:
        speaker = self.voices.get(job.voice) if job.voice is not None else None
        encoder = AudioEncoder(job.response_format, self.voice.sample_rate)
        for sentence in split_sentences(job.text):
            samples = self.voice.synthesize(sentence, speaker, job.speed)
            self.jobs.count(samples.size / self.voice.sample_rate, len(sentence))
            if chunk := encoder.feed(samples):
                yield chunk
        yield encoder.finish()

    def close(self) -> None:
        self.jobs.close()


def _describe(runtime: PiperRuntime) -> dict[str, Any]:
    return runtime.describe()


def _stats(runtime: PiperRuntime) -> JobStats:
    return runtime.jobs.snapshot()


SPEECH_RUNTIME = KindRuntime(build=PiperRuntime, describe=_describe, stats=_stats)
