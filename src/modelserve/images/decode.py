"""Check and decode image bytes with Pillow into the RGB pixels the projector takes."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

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


def decode_image(data: bytes, limits: ImageLimits) -> DecodedImage:
    """Decode one image; every way it can be unusable is an ImageError saying which."""
    if len(data) > limits.max_bytes:
        raise ImageError(f"image is larger than the limit of {limits.max_bytes} bytes",
                         code="image_too_large")
    try:
        # Opening reads only the header: the size is checked before any pixel is decoded,
        # so a small file that would inflate to gigabytes (a decompression bomb) costs nothing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(f"image has more than {limits.max_pixels} pixels",
                         code="image_too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError("data is not an image in a supported format "
                         f"({', '.join(sorted(FORMATS))})", code="unsupported_image_format") \
            from None
    with image:
        if image.format not in FORMATS:
            raise ImageError(f"image format {image.format} is not supported "
                             f"({', '.join(sorted(FORMATS))})", code="unsupported_image_format")
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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                rgb = image.convert("RGB").tobytes()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageError(f"image data is corrupt or truncated ({exc})") from None
    digest = hashlib.sha256(f"{width}x{height}:".encode() + rgb).hexdigest()
    return DecodedImage(width, height, rgb, digest)
