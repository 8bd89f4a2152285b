"""Image sizes: parse OpenAI's "WxH" strings and check them against a model's limits."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Stable Diffusion's VAE works on 8x8 pixel blocks; every diffusers SD/SDXL pipeline rejects
# other sizes, so they are refused here with a clear message instead.
MULTIPLE = 8
_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*$")


class SizeError(ValueError):
    """A size that is malformed or outside the model's limits; the message says which."""


@dataclass(frozen=True)
class SizeLimits:
    default: tuple[int, int]
    min_width: int = 64
    min_height: int = 64
    max_width: int = 1024
    max_height: int = 1024


def parse_size(text: str) -> tuple[int, int]:
    """`"512x768"` -> `(512, 768)` (width, height)."""
    match = _SIZE.match(text)
    if match is None:
        raise SizeError(f"Invalid size {text!r}: expected WIDTHxHEIGHT, e.g. '512x512'.")
    return int(match.group(1)), int(match.group(2))


def check_size(width: int, height: int, limits: SizeLimits) -> tuple[int, int]:
    if width % MULTIPLE or height % MULTIPLE:
        raise SizeError(f"Invalid size {width}x{height}: width and height must be multiples "
                        f"of {MULTIPLE}.")
    if not limits.min_width <= width <= limits.max_width:
        raise SizeError(f"Invalid size {width}x{height}: width must be between "
                        f"{limits.min_width} and {limits.max_width}.")
    if not limits.min_height <= height <= limits.max_height:
        raise SizeError(f"Invalid size {width}x{height}: height must be between "
                        f"{limits.min_height} and {limits.max_height}.")
    return width, height


def resolve_size(text: str | None, limits: SizeLimits) -> tuple[int, int]:
    """The size a request asks for; None or "auto" (gpt-image-1's value) is the default."""
    if text is None or text.strip() == "auto":
        return limits.default
    return check_size(*parse_size(text), limits)
