"""Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`, for every
failure on its routes (a 400 for a bad field, a 429, a 503, ...), and as a stream's event."""

from __future__ import annotations

import json
from typing import Any

from modelserve.api.errors import APIError

# Anthropic's error types by HTTP status (its SDK picks the exception by the status).
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 408: "timeout_error", 413: "request_too_large",
         429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def body(err: APIError) -> dict[str, Any]:
    message = f"{err.param}: {err.message}" if err.param and err.status == 400 \
        and not err.message.startswith(err.param) else err.message
    return {"type": "error", "error": {"type": TYPES.get(err.status, "api_error"),
                                       "message": message}}


def stream_error(err: APIError) -> str:
    """A failure after the stream began: Anthropic's `error` event (then the stream ends)."""
    data = json.dumps(body(err), separators=(",", ":"), ensure_ascii=False)
    return f"event: error\ndata: {data}\n\n"
