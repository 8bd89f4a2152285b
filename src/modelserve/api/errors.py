"""OpenAI's error envelope for every failure: `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelserve.failures import QueueFull, StateLost, WorkerDied, WorkerStalled

logger = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """OpenAI's envelope (api/protocol.py's ErrorResponse documents it); other surfaces
        render the same error in their own shape (api/anthropic, api/ollama)."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def sse(self) -> str:
        """The same error as a server-sent event, for failures after a stream began."""
        return f"data: {json.dumps(self.body())}\n\n"


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a body past the limit; FastAPI lets HTTP exceptions through."""

    code = "request_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyTimeout(StarletteHTTPException):
    """Raised while reading a body that does not arrive in time; the connection is closed
    after the answer (the rest of the body may still be on its way)."""

    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(408, message, headers={"Connection": "close"})


def queue_full(what: str = "requests") -> APIError:
    """A model's queue is full: the one 429 every route answers for it."""
    return APIError(429, f"The server is busy: too many {what} are waiting for this model. "
                     "Please retry shortly.", type="rate_limit_error", code="queue_full",
                     headers={"Retry-After": "1"})


def model_unavailable(detail: str, retry_after: float = 5.0, name: str | None = None,
                      loading: bool = False) -> APIError:
    """A model that cannot serve now (its worker died, it restarts, it loads): the one 503
    every route answers for it, streamed or not."""
    subject = f"The model '{name}'" if name else "The model"
    return APIError(503, f"{subject} is not available: {detail}. Please retry shortly.",
                    type="server_error", param="model" if name else None,
                    code="model_loading" if loading else "model_unavailable",
                    headers={"Retry-After": str(max(1, round(retry_after)))})


def model_failure(error: BaseException) -> APIError | None:
    """The answer for a model failure raised as an exception (None: not one of those)."""
    if isinstance(error, QueueFull):
        return queue_full()
    if isinstance(error, WorkerDied | WorkerStalled | StateLost):
        return model_unavailable(str(error))
    return None


def stream_failure(exc: Exception, what: str) -> APIError:
    """The error event a stream ends with when its work fails after the answer began."""
    if isinstance(exc, APIError):
        return exc
    return model_failure(exc) or APIError(500, f"{what} failed: {exc}", type="server_error")


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(name: str) -> APIError:
    return APIError(404, f"The model '{name}' does not exist", param="model",
                    code="model_not_found", type="invalid_request_error")


@dataclass(frozen=True)
class ErrorShape:
    """How an API surface writes an error: as a whole body, and as the end of a stream it
    has begun (the client's parser sees an error, then the end)."""

    body: Callable[[APIError], dict[str, Any]]
    stream_end: Callable[[APIError], str]


OPENAI = ErrorShape(lambda err: err.body(), lambda err: err.sse() + "data: [DONE]\n\n")
# Surfaces with another shape, by the path prefix of their routes (api/app.py fills it);
# every other path answers in OpenAI's envelope.
SHAPES: dict[str, ErrorShape] = {}


def shape_for(path: str) -> ErrorShape:
    return next((shape for prefix, shape in SHAPES.items() if path.startswith(prefix)), OPENAI)


def error_response(err: APIError, path: str) -> JSONResponse:
    """The one place an error becomes a response, in the shape of the surface asked."""
    return JSONResponse(shape_for(path).body(err), status_code=err.status, headers=err.headers)


def _response(err: APIError, request: Request) -> JSONResponse:
    return error_response(err, request.url.path)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        if part.isdigit():
            out += f"[{part}]"
        elif ("[" in part and not part.endswith("[]")) or "." in part \
                or part.startswith("function-"):
            continue  # pydantic's union-branch labels, not user fields (a form's "a[]" is)
        else:
            out += f".{part}" if out else part
    return out


def validation_message(errors: Any) -> tuple[str | None, str]:
    """The first pydantic error as (field path, message) in the user's terms."""
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid"}
    field = _field_path(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return field or None, (f"Invalid value for '{field}': {message}" if field else message)


def validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid"}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "invalid JSON")
        return bad_request(f"We could not parse the JSON body of your request. ({detail})")
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
        return bad_request("The request body must be a JSON object.")
    field, message = validation_message(errors)
    return bad_request(message, param=field)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _response(validation_error(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 403: "permission_error",
                404: "not_found_error"}.get(exc.status_code, "invalid_request_error")
        return _response(APIError(exc.status_code, str(exc.detail), type=kind,
                                  code=getattr(exc, "code", None),
                                  headers=getattr(exc, "headers", None)), request)

    @app.exception_handler(QueueFull)
    @app.exception_handler(WorkerDied)
    @app.exception_handler(WorkerStalled)
    @app.exception_handler(StateLost)
    async def _model_failure(request: Request, exc: Exception) -> JSONResponse:
        answer = model_failure(exc)
        assert answer is not None
        return _response(answer, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return _response(APIError(500, "The server had an error while processing your request.",
                                  type="server_error"), request)
