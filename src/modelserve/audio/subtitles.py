"""Transcript formats of /v1/audio/transcriptions besides JSON: SubRip (srt) and WebVTT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _stamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: Sequence[dict[str, Any]]) -> str:
    blocks = [f"{i}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n"
              f"{s['text'].strip()}\n" for i, s in enumerate(segments, 1)]
    return "\n".join(blocks)


def vtt(segments: Sequence[dict[str, Any]]) -> str:
    blocks = [f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text'].strip()}\n"
              for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks)
