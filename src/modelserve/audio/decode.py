"""Uploaded audio to 16 kHz mono float32 samples (what Whisper hears), with PyAV, checked.

Any container and codec FFmpeg reads (wav, mp3, flac, ogg/opus, webm, m4a, ...). What is
not usable is a BadAudio naming why: not audio at all, no audio stream, nothing decodable,
longer than the model's limit (decoding stops there rather than at the end of a huge file),
or truncated (fewer samples than the container declares).
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt

from modelserve.audio.jobs import BadAudio

RATE = 16000
# A file may decode a little short of what its header says (encoder padding, rounding);
# less than this share of it is a truncated upload.
TRUNCATED_BELOW = 0.9


def decode(data: bytes, max_seconds: float, rate: int = RATE) -> npt.NDArray[np.float32]:
    import av

    if not data:
        raise BadAudio("The audio file is empty.", "empty_file")
    try:
        container = av.open(io.BytesIO(data), metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError):
        raise BadAudio("The file is not audio that can be decoded (send wav, mp3, flac, "
                       "ogg/opus, webm or m4a).") from None
    with container:
        if not container.streams.audio:
            raise BadAudio("The file has no audio stream.")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[npt.NDArray[np.float32]] = []
        limit, total = int(max_seconds * rate), 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total > limit:
                    raise BadAudio(f"The audio is longer than this model's limit of "
                                   f"{max_seconds:g} seconds.", "audio_too_long")
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise BadAudio(f"The audio could not be decoded: {exc}") from None
            # Corrupt after some good audio: refused below when clearly short of its length.
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks \
        else np.zeros(0, np.float32)
    if samples.size == 0:
        raise BadAudio("The file holds no audio samples.", "empty_audio")
    missing = _wav_shortfall(data)
    if missing is not None and missing > 1 - TRUNCATED_BELOW:
        raise BadAudio(f"The audio is truncated: {missing:.0%} of the WAV data its header "
                       "declares is missing.", "truncated_audio")
    seconds = samples.size / rate
    if declared is not None and seconds < declared * TRUNCATED_BELOW:
        raise BadAudio(f"The audio is truncated: the file says {declared:.2f} s but only "
                       f"{seconds:.2f} s could be decoded.", "truncated_audio")
    return samples


def _wav_shortfall(data: bytes) -> float | None:
    """For a WAV file: the share of its `data` chunk's declared bytes that are missing (FFmpeg
    sizes a WAV stream by the bytes present, so a cut file looks whole to it)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at: at + 4], int.from_bytes(data[at + 4: at + 8], "little")
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):  # unknown: a streamed WAV
                return None
            present = len(data) - at - 8
            return max(0.0, 1 - present / size)
        at += 8 + size + (size & 1)
    return None


def _declared_seconds(container: object, stream: object) -> float | None:
    """The stream's length as its header states it, when it does."""
    duration, base = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if duration and base:
        return float(duration * base)
    whole = getattr(container, "duration", None)  # in microseconds (AV_TIME_BASE)
    return whole / 1_000_000 if whole else None
