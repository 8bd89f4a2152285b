"""Ollama's error shape, `{"error": "message"}` with the HTTP status, for every failure on
its routes; after an NDJSON stream began, the same object as its last line."""

from __future__ import annotations

from typing import Any

from modelserve.api.errors import APIError
from modelserve.api.streams import json_line


def message(err: APIError) -> str:
    # Ollama's messages are one string: a bad field's name goes into it.
    if err.param and err.status == 400 and err.param not in err.message:
        return f"{err.param}: {err.message}"
    return err.message


def body(err: APIError) -> dict[str, Any]:
    return {"error": message(err)}


def stream_error(err: APIError) -> str:
    return json_line(body(err))


def not_found(name: str) -> APIError:
    """Ollama's own wording: its clients (and users) know it."""
    return APIError(404, f'model "{name}" not found, try pulling it first', param="model",
                    code="model_not_found", type="not_found_error")
