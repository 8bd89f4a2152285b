"""Streaming encoders for /v1/audio/speech: float32 samples in, bytes of the response out.

Speech is synthesised sentence by sentence, and each sentence's audio is encoded and sent as
soon as it exists, so the client hears the first sentence while later ones are still being
synthesised. Every encoder therefore writes a stream that needs no seeking back: MP3 frames
without a Xing header, Opus in Ogg, AAC in ADTS, raw FLAC, and WAV with the sizes left
unknown (0xFFFFFFFF, as streaming servers write it). All of them run at OUTPUT_RATE, OpenAI's
rate; its `pcm` has no header, so clients assume 24 kHz.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
OUTPUT_RATE = 24000

# format -> (muxer, encoder, bit rate, muxer options). The options keep each stream
# streamable and prompt: flush_packets hands every packet to the client as it is muxed
# instead of when ffmpeg's 32 KiB write buffer fills.
_CODECS: dict[str, tuple[str, str, int, dict[str, str]]] = {
    # No ID3 tag and no Xing frame: both need the whole file (or a seek back) to be right.
    "mp3": ("mp3", "libmp3lame", 64_000, {"id3v2_version": "0", "write_xing": "0"}),
    # Ogg pages close every 0.2 s instead of every second (ffmpeg's default).
    "opus": ("ogg", "libopus", 48_000, {"page_duration": "200000"}),
    "aac": ("adts", "aac", 64_000, {}),
    # The STREAMINFO block keeps "total samples unknown": nothing to rewrite at the end.
    "flac": ("flac", "flac", 0, {}),
}


class _Sink:
    """A write-only file for PyAV that collects what the muxer writes. It has no seek, so
    ffmpeg knows the output is a stream and never tries to go back."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def wav_header(rate: int = OUTPUT_RATE) -> bytes:
    """A 44-byte RIFF/WAVE header for mono 16-bit PCM of unknown length."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


class AudioEncoder:
    """Encodes one response: `feed` it samples as they are synthesised and send what it
    returns, then send what `finish` returns. The bytes returned, concatenated, are one
    valid file of the format. Not thread-safe: one encoder per response."""

    def __init__(self, fmt: str, input_rate: int) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown audio format {fmt!r}; one of {', '.join(FORMATS)}")
        self.format = fmt
        self.input_rate = input_rate
        self.media_type = MEDIA_TYPES[fmt]
        self._samples = 0  # output samples encoded so far: the next frame's pts
        self._pending = wav_header() if fmt == "wav" else b""
        self._container: Any = None
        self._stream: Any = None
        self._sink = _Sink()
        sample_format = "s16"
        if fmt in _CODECS:
            muxer, codec, bit_rate, options = _CODECS[fmt]
            self._container = av.open(self._sink, "w", format=muxer,
                                      container_options={"flush_packets": "1", **options})
            self._stream = self._container.add_stream(codec, rate=OUTPUT_RATE)
            self._stream.layout = "mono"
            if bit_rate:
                self._stream.bit_rate = bit_rate
            sample_format = self._stream.format.name
        # Stateful: it carries its filter's history from one chunk to the next, so sentences
        # join without clicks, and it holds back the last few samples until flushed.
        self._resampler = av.AudioResampler(format=sample_format, layout="mono",
                                            rate=OUTPUT_RATE)

    def feed(self, samples: npt.NDArray[np.float32]) -> bytes:
        """Encode mono samples in [-1, 1] at input_rate; returns the bytes ready so far."""
        data = np.clip(np.asarray(samples, dtype=np.float32).reshape(1, -1), -1.0, 1.0)
        if data.size:
            frame = av.AudioFrame.from_ndarray(data, format="flt", layout="mono")
            frame.sample_rate = self.input_rate
            self._encode(self._resampler.resample(frame))
        return self._take()

    def finish(self) -> bytes:
        """Flush the resampler, the encoder and the muxer; returns the last bytes."""
        self._encode(self._resampler.resample(None))
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return self._take()

    def _encode(self, frames: list[Any]) -> None:
        for frame in frames:
            if self._container is None:  # wav, pcm: the samples as they are
                self._pending += frame.to_ndarray().astype("<i2").tobytes()
                continue
            frame.pts = self._samples
            frame.time_base = Fraction(1, OUTPUT_RATE)
            self._samples += frame.samples
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def _take(self) -> bytes:
        out = self._pending + self._sink.take()
        self._pending = b""
        return out
