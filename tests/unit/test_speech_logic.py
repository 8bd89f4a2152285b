"""The speech kinds' pure logic: the job queue's bound, stop and errors; subtitles; the
transcript renderings; the voice table; chunking_strategy as clients send it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest

from modelserve.api.errors import APIError
from modelserve.api.protocol_audio import TranscriptionRequest, TranslationRequest
from modelserve.api.transcriptions import _chunking, render
from modelserve.audio.jobs import BadAudio
from modelserve.audio.subtitles import srt, vtt
from modelserve.failures import QueueFull
from modelserve.runtimes.job_queue import JobQueue
from modelserve.runtimes.piper import OPENAI_VOICES, voice_table
from modelserve.sources import ConfigError

SEGMENTS = [{"id": 0, "start": 0.0, "end": 2.5, "text": " Hello there.",
             "words": [{"word": " Hello", "start": 0.0, "end": 0.5}]},
            {"id": 1, "start": 2.5, "end": 3661.25, "text": " Goodbye.", "words": []}]
INFO = {"language": "english", "duration": 3661.2}


def test_a_job_streams_its_items_and_is_counted() -> None:
    jobs = JobQueue("t", workers=1, max_waiting=0)

    async def main() -> list[int]:
        return [item async for item in jobs.run(lambda: iter(range(3)))]

    assert asyncio.run(main()) == [0, 1, 2]
    time.sleep(0.05)
    assert jobs.snapshot().completed == 1


def test_a_full_queue_refuses_and_a_consumer_that_leaves_stops_the_job() -> None:
    jobs = JobQueue("t", workers=1, max_waiting=0)
    made: list[int] = []
    release = threading.Event()

    def slow() -> Iterator[int]:
        for i in range(100):
            made.append(i)
            release.wait(5)
            yield i

    async def main() -> None:
        stream = jobs.run(slow)
        assert await anext(stream) == 0
        with pytest.raises(QueueFull):
            await anext(jobs.run(slow))
        await stream.aclose()  # the consumer leaves
        release.set()

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while jobs.snapshot().cancelled != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(made) <= 2 and jobs.snapshot().running == 0


def test_a_job_error_reaches_the_consumer() -> None:
    jobs = JobQueue("t", workers=1, max_waiting=4)

    def bad() -> Iterator[int]:
        raise BadAudio("nope", "empty_file")
        yield 0

    async def main() -> None:
        with pytest.raises(BadAudio) as caught:
            await anext(jobs.run(bad))
        assert caught.value.code == "empty_file"

    asyncio.run(main())


def test_bad_audio_keeps_its_code_across_the_pipe() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(BadAudio("too long", "audio_too_long")))
    assert copy.code == "audio_too_long" and str(copy) == "too long"


def test_job_stats_real_time_factor() -> None:
    jobs = JobQueue("t", workers=1, max_waiting=0)
    assert jobs.snapshot().real_time_factor == 0.0
    jobs.stats.processing_seconds = 1.0
    jobs.count(4.0, characters=12)
    stats = jobs.snapshot()
    assert stats.real_time_factor == 0.25 and stats.characters == 12


def test_subtitles() -> None:
    assert srt(SEGMENTS) == ("1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
                             "2\n00:00:02,500 --> 01:01:01,250\nGoodbye.\n")
    assert vtt(SEGMENTS).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.")


def test_renderings() -> None:
    req = TranslationRequest(model="m")
    assert json.loads(render(req, "transcribe", INFO, SEGMENTS)) == {
        "text": "Hello there. Goodbye.", "usage": {"type": "duration", "seconds": 3662}}
    text = render(TranslationRequest(model="m", response_format="text"), "t", INFO, SEGMENTS)
    assert text == b"Hello there. Goodbye.\n"
    verbose = TranscriptionRequest.model_validate(
        {"model": "m", "response_format": "verbose_json",
         "timestamp_granularities[]": ["word"]})
    body = json.loads(render(verbose, "transcribe", INFO, SEGMENTS))
    assert body["words"] == SEGMENTS[0]["words"] and "segments" not in body
    assert body["language"] == "english" and body["task"] == "transcribe"
    plain = json.loads(render(verbose.model_copy(update={"timestamp_granularities": []}),
                              "transcribe", INFO, SEGMENTS))
    assert "words" not in plain and "words" not in plain["segments"][0]


def test_chunking_strategy_as_clients_send_it() -> None:
    assert _chunking("chunking_strategy", "auto") == "auto"
    assert _chunking("chunking_strategy", '{"type": "server_vad"}') == "server_vad"
    assert _chunking("chunking_strategy[type]", "server_vad") == "server_vad"
    for key, value in [("chunking_strategy", '{"type": "server_vad", "threshold": 1}'),
                       ("chunking_strategy[threshold]", "0.5"), ("chunking_strategy", "{")]:
        with pytest.raises(APIError):
            _chunking(key, value)


def test_voice_table() -> None:
    table = voice_table({}, {"narrator": 0})
    assert set(OPENAI_VOICES) <= set(table) and table["narrator"] is None
    multi = voice_table({"amy": 0, "bob": 1}, {"alloy": "bob", "echo": 0})
    assert multi["alloy"] == 1 and multi["echo"] == 0 and multi["amy"] == 0
    assert multi["nova"] is None
    with pytest.raises(ConfigError):
        voice_table({"amy": 0}, {"alloy": "zed"})
    with pytest.raises(ConfigError):
        voice_table({"amy": 0}, {"alloy": 5})
