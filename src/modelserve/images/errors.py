"""The one error type of image loading: its message is safe to show to the client."""

from __future__ import annotations


class ImageError(ValueError):
    """An image could not be used; `code` is a stable machine-readable reason."""

    def __init__(self, message: str, code: str = "invalid_image") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
