"""Edit uploads: decode the `image` and `mask` files (images/decode.py), or say which is bad."""

from __future__ import annotations

from PIL import Image

from modelserve.api.errors import bad_request
from modelserve.images.decode import Unusable, load_untrusted, open_untrusted

FORMATS = frozenset({"PNG", "JPEG", "WEBP"})  # what OpenAI's edits endpoint takes


def decode_upload(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """A fully decoded image, or a 400 naming `param`."""
    if not data:
        raise bad_request(f"The '{param}' file is empty.", param=param)
    try:
        image = open_untrusted(data, FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise bad_request(f"The '{param}' image is {width}x{height}, over the limit of "
                              f"{max_pixels} pixels.", param=param, code="image_too_large")
        return load_untrusted(image)
    except Unusable as exc:
        if exc.reason == "not_an_image":
            raise bad_request(f"The '{param}' file is not an image (PNG, JPEG or WEBP).",
                              param=param, code="invalid_image") from None
        if exc.reason == "format":
            raise bad_request(f"Unsupported '{param}' format {exc.detail}: send a PNG, "
                              "JPEG or WEBP file.", param=param,
                              code="invalid_image_format") from None
        raise bad_request(f"The '{param}' image could not be decoded: {exc.detail}",
                          param=param, code="invalid_image") from None


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
