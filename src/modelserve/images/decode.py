"""Pillow for untrusted image bytes: open and check, then decode (vision inputs, edit uploads)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError

from modelserve.images.errors import ImageError

FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    max_side: int


@dataclass(frozen=True)
class DecodedImage:
    width: int
    height: int
    rgb: bytes  # width * height * 3, row-major RGBRGB...
    digest: str  # sha256 of size and pixels: the image's identity for prefix reuse


class Unusable(Exception):
    """Why untrusted bytes are not a usable image; each caller words it for its own API."""

    def __init__(self, reason: Literal["not_an_image", "format", "bomb", "corrupt"],
                 detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail  # the format's name, or what Pillow said


def open_untrusted(data: bytes, formats: frozenset[str]) -> Image.Image:
    """Open untrusted bytes with Pillow, reading only the header: the caller checks the size
    before any pixel is decoded (`load_untrusted`), so a small file that would inflate to
    gigabytes (a decompression bomb) costs nothing. The one place the server opens images it
    did not make (vision chat inputs and edit uploads)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its own cap, raises) on decompression bombs; the
            # caller's pixel cap is the limit that applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Unusable("not_an_image") from None
    except Image.DecompressionBombError as exc:
        raise Unusable("bomb", str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise Unusable("corrupt", str(exc)) from None
    if image.format not in formats:
        image.close()
        raise Unusable("format", str(image.format))
    return image


def load_untrusted(image: Image.Image, mode: str | None = None) -> Image.Image:
    """Decode the pixels of an opened image (converted to `mode` when given)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if mode is not None:
                return image.convert(mode)
            image.load()
            return image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise Unusable("corrupt", str(exc)) from None


def decode_image(data: bytes, limits: ImageLimits) -> DecodedImage:
    """Decode one image; every way it can be unusable is an ImageError saying which."""
    if len(data) > limits.max_bytes:
        raise ImageError(f"image is larger than the limit of {limits.max_bytes} bytes",
                         code="image_too_large")
    supported = ", ".join(sorted(FORMATS))
    try:
        image = open_untrusted(data, FORMATS)
    except Unusable as exc:
        if exc.reason == "bomb":
            raise ImageError(f"image has more than {limits.max_pixels} pixels",
                             code="image_too_large") from None
        if exc.reason == "format":
            raise ImageError(f"image format {exc.detail} is not supported ({supported})",
                             code="unsupported_image_format") from None
        raise ImageError(f"data is not an image in a supported format ({supported})",
                         code="unsupported_image_format") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageError("image has no pixels")
        if width * height > limits.max_pixels:
            raise ImageError(f"image is {width}x{height} = {width * height} pixels, over the "
                             f"limit of {limits.max_pixels}", code="image_too_large")
        if max(width, height) > limits.max_side:
            raise ImageError(f"image is {width}x{height}, a side over the limit of "
                             f"{limits.max_side} pixels", code="image_too_large")
        try:
            rgb = load_untrusted(image, "RGB").tobytes()
        except Unusable as exc:
            raise ImageError(f"image data is corrupt or truncated ({exc.detail})") from None
    digest = hashlib.sha256(f"{width}x{height}:".encode() + rgb).hexdigest()
    return DecodedImage(width, height, rgb, digest)
