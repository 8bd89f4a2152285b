"""What the client commands share: where the running server is, its key, and its errors as
one line on stderr (exit 1) instead of a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


def add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("MODELSERVE_URL", DEFAULT_URL),
                        help="the running server (default: $MODELSERVE_URL or %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("MODELSERVE_API_KEY"),
                        help="API key (default: $MODELSERVE_API_KEY)")


def fail(message: str) -> NoReturn:
    sys.exit(f"modelserve: {message}")


class APIFailure(Exception):
    """The server answered with an error: its status and its own message, in one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_message(status: int, body: Any) -> str:
    """The server's message out of any of its error shapes (OpenAI's, Ollama's, FastAPI's)."""
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or body.get("detail")
    text = str(message) if message else f"the server answered HTTP {status}"
    return " ".join(text.split())  # one line, whatever the server put in it


def failure_of(response: httpx.Response) -> APIFailure:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = error_message(response.status_code, body)
    if response.status_code == 401:
        message = ("the server needs an API key (pass --api-key or set MODELSERVE_API_KEY): "
                   + message)
    elif response.status_code == 403:
        message = f"the server refused this API key: {message}"
    return APIFailure(response.status_code, message)


class Server:
    """An httpx client for the server at `url`; transport failures become one-line exits."""

    def __init__(self, url: str, api_key: str | None, timeout: float | None = 600) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=5))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Server:
        return cls(args.url, args.api_key)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @contextmanager
    def reaching(self) -> Iterator[None]:
        """Any transport failure as the one line a user can act on."""
        try:
            yield
        except httpx.ConnectError:
            fail(f"no modelserve server at {self.url} (start one with `modelserve serve`)")
        except httpx.TimeoutException:
            fail(f"the server at {self.url} did not answer in time")
        except httpx.HTTPError as exc:
            fail(f"the connection to {self.url} failed: {exc}")

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; its JSON answer, or a one-line exit with the server's message."""
        with self.reaching():
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            fail(failure_of(response).message)
        try:
            return response.json()
        except ValueError:
            fail(f"the server at {self.url} did not answer JSON (is it a modelserve server?)")
