"""The streaming speech encoders: every format's concatenated output decodes with PyAV to the
right duration at 24 kHz, the first sentence already yields bytes, and the raw formats are
exactly what OpenAI's clients expect (headerless s16le for pcm, a 44-byte RIFF header for wav)."""

from __future__ import annotations

import io
import struct

import numpy as np
import numpy.typing as npt
import pytest

av = pytest.importorskip("av")

from modelserve.audio.encode import (  # noqa: E402
    FORMATS,
    MEDIA_TYPES,
    OUTPUT_RATE,
    AudioEncoder,
    wav_header,
)

RATE = 22050  # a Piper voice's rate


def tone(seconds: float, rate: int = RATE) -> npt.NDArray[np.float32]:
    """A speech-like test signal: a gliding tone with a little noise, peak ~0.8."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    signal = 0.6 * np.sin(2 * np.pi * (180 + 60 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def encode(fmt: str, chunks: list[npt.NDArray[np.float32]], rate: int = RATE) -> list[bytes]:
    encoder = AudioEncoder(fmt, rate)
    return [encoder.feed(chunk) for chunk in chunks] + [encoder.finish()]


def decode(fmt: str, data: bytes) -> tuple[npt.NDArray[np.float32], int]:
    """Every channel-0 sample PyAV decodes from `data`, and the decoded rate."""
    if fmt == "pcm":
        container = av.open(io.BytesIO(data), format="s16le",
                            options={"sample_rate": str(OUTPUT_RATE), "ch_layout": "mono"})
    else:
        container = av.open(io.BytesIO(data))
    with container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
        rate = container.streams.audio[0].codec_context.sample_rate
    samples = np.concatenate([f.reshape(f.shape[0], -1)[0] for f in frames])
    scale = 32768 if samples.dtype.kind == "i" else 1  # s16 (flac, wav, pcm) or float
    return samples.astype(np.float32) / scale, rate


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_duration(fmt: str) -> None:
    """Sentences of 1.3 s, 0.4 s and 2.1 s fed one by one decode as one 3.8 s file."""
    chunks = [tone(1.3), tone(0.4), tone(2.1)]
    data = b"".join(encode(fmt, chunks))
    samples, rate = decode(fmt, data)
    assert rate in (OUTPUT_RATE, 48000)  # Opus always decodes at 48 kHz
    if fmt != "opus":
        assert rate == OUTPUT_RATE
    assert samples.size / rate == pytest.approx(3.8, abs=0.1)
    # Not silence: the tone (RMS ~0.43) made it through the encoder.
    assert float(np.sqrt(np.mean(np.square(samples)))) > 0.3


@pytest.mark.parametrize("fmt", FORMATS)
def test_first_sentence_gives_bytes(fmt: str) -> None:
    """Time to first byte: the first sentence's feed returns audio, not only at finish."""
    encoder = AudioEncoder(fmt, RATE)
    assert len(encoder.feed(tone(1.0))) > 44
    assert encoder.media_type == MEDIA_TYPES[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_feeds_and_empty_response(fmt: str) -> None:
    """Feeding nothing is allowed; a response with no audio is still a well-formed file."""
    encoder = AudioEncoder(fmt, RATE)
    data = encoder.feed(np.zeros(0, dtype=np.float32)) + encoder.finish()
    if fmt == "wav":
        assert data == wav_header()
    elif fmt == "pcm":
        assert data == b""


def test_pcm_is_headerless_s16le_at_24khz() -> None:
    """At 24 kHz in, pcm is the samples themselves: 2 bytes each, little-endian."""
    signal = tone(1.0, OUTPUT_RATE)
    data = b"".join(encode("pcm", [signal[:10_000], signal[10_000:]], OUTPUT_RATE))
    assert len(data) == 2 * signal.size
    decoded = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    assert np.abs(decoded - signal).max() < 2e-4


def test_pcm_resampled_length() -> None:
    """22.05 kHz in: 24000/22050 as many samples out, 2 bytes each."""
    data = b"".join(encode("pcm", [tone(1.0), tone(1.0)]))
    assert len(data) % 2 == 0
    assert len(data) // 2 == pytest.approx(2 * OUTPUT_RATE, abs=4)


def test_wav_header() -> None:
    """RIFF/WAVE, PCM mono 16-bit 24 kHz, sizes unknown (0xFFFFFFFF) for streaming."""
    data = b"".join(encode("wav", [tone(0.5)]))
    riff, riff_size, wave, fmt_id, fmt_size = struct.unpack("<4sI4s4sI", data[:20])
    tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", data[20:36])
    data_id, data_size = struct.unpack("<4sI", data[36:44])
    assert (riff, wave, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert riff_size == data_size == 0xFFFFFFFF
    assert (fmt_size, tag, channels, rate, byte_rate, align, bits) == (
        16, 1, 1, OUTPUT_RATE, 2 * OUTPUT_RATE, 2, 16)
    assert (len(data) - 44) // 2 == pytest.approx(OUTPUT_RATE / 2, abs=4)


def test_flac_is_lossless() -> None:
    """FLAC decodes to exactly the 16-bit samples pcm sends."""
    chunks = [tone(0.7), tone(1.1)]
    pcm = np.frombuffer(b"".join(encode("pcm", chunks)), dtype="<i2")
    samples, _ = decode("flac", b"".join(encode("flac", chunks)))
    assert np.array_equal(np.round(samples * 32768).astype(np.int16), pcm)


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown audio format"):
        AudioEncoder("ogg", RATE)
