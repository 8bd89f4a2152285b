"""RFC 2397 `data:` URLs, as OpenAI clients send inline images (base64 only)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from modelserve.images.errors import ImageError

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class DataURL:
    media_type: str
    data: bytes


def parse_data_url(url: str, max_bytes: int) -> DataURL:
    """Decode `data:<media type>[;params];base64,<payload>`; anything else is an ImageError."""
    if not url.startswith("data:"):
        raise ImageError("not a data: URL")
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ImageError("malformed data: URL (no comma before the data)")
    media_type, *params = header.split(";")
    media_type = media_type.strip().lower()
    if "base64" not in (p.strip().lower() for p in params):
        raise ImageError("data: URLs of images must be base64-encoded (';base64,')")
    if media_type and not _MEDIA_TYPE.match(media_type):
        raise ImageError(f"malformed media type {media_type[:40]!r} in data: URL")
    if media_type and not media_type.startswith("image/"):
        raise ImageError(f"data: URL has media type {media_type!r}, not an image",
                         code="unsupported_image_format")
    # Base64 is 4 characters per 3 bytes: refuse before decoding a payload that cannot fit.
    if len(payload) > (max_bytes + 2) // 3 * 4 + 4:
        raise ImageError(f"image is larger than the limit of {max_bytes} bytes",
                         code="image_too_large")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("image data is not valid base64") from None
    if not data:
        raise ImageError("image data is empty")
    if len(data) > max_bytes:
        raise ImageError(f"image is larger than the limit of {max_bytes} bytes",
                         code="image_too_large")
    return DataURL(media_type or "image/*", data)
