"""Edit uploads: decode the `image` and `mask` files with Pillow, or say which one is bad."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from modelserve.api.errors import APIError, bad_request

FORMATS = {"PNG", "JPEG", "WEBP"}  # what OpenAI's edits endpoint takes


def decode_upload(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """A fully decoded image, or a 400 naming `param`."""
    if not data:
        raise bad_request(f"The '{param}' file is empty.", param=param)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x, raises) on decompression bombs; the pixel cap below
            # is the limit that applies here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise bad_request(f"Unsupported '{param}' format {image.format}: send a PNG, "
                                  "JPEG or WEBP file.", param=param, code="invalid_image_format")
            width, height = image.size
            if width * height > max_pixels:
                raise bad_request(f"The '{param}' image is {width}x{height}, over the limit of "
                                  f"{max_pixels} pixels.", param=param, code="image_too_large")
            image.load()
    except APIError:
        raise
    except UnidentifiedImageError:
        raise bad_request(f"The '{param}' file is not an image (PNG, JPEG or WEBP).",
                          param=param, code="invalid_image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise bad_request(f"The '{param}' image could not be decoded: {exc}", param=param,
                          code="invalid_image") from None
    return image


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def to_mask(image: Image.Image) -> Image.Image:
    """diffusers' mask (white = repaint) from an upload.

    With an alpha channel, OpenAI's rule: fully transparent pixels are the ones to edit.
    Without one, the image is read as diffusers' grayscale mask (white = edit).
    """
    if has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
        return alpha.point(lambda a: 255 if a == 0 else 0)
    return image.convert("L")
