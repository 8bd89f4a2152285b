"""The server's caps on what one request may ask for (`limits:` in the config).

Each cap refused is a 400 that names the cap, so a user knows which setting they hit.
"""

from __future__ import annotations

from fastapi import Request

from modelserve.api.errors import APIError
from modelserve.api.protocol import SamplingFields
from modelserve.config_sections import InputLimits


def limits_of(request: Request) -> InputLimits:
    limits: InputLimits = request.app.state.settings.limits
    return limits


def _over(message: str, param: str, limit: str, code: str = "limit_exceeded") -> APIError:
    return APIError(400, f"{message} (server limit `{limit}`).", param=param, code=code)


def check_sampling(req: SamplingFields, limits: InputLimits,
                   max_tokens: int | None) -> None:
    if req.n > limits.max_n:
        raise _over(f"n is {req.n}, over the maximum of {limits.max_n}", "n", "max_n")
    if max_tokens is not None and limits.max_tokens is not None \
            and max_tokens > limits.max_tokens:
        raise _over(f"max_tokens is {max_tokens}, over the maximum of {limits.max_tokens}",
                    "max_tokens", "max_tokens")


def check_texts(texts: list[str], limits: InputLimits, param: str) -> None:
    for i, text in enumerate(texts):
        if len(text) > limits.max_message_chars:
            raise _over(f"{param} {i} has {len(text)} characters, over the maximum of "
                        f"{limits.max_message_chars}", param, "max_message_chars")


def check_inputs(count: int, limits: InputLimits, param: str = "input") -> None:
    if count > limits.max_embedding_inputs:
        raise _over(f"{count} {param}, over the maximum of {limits.max_embedding_inputs}",
                    param, "max_embedding_inputs", code="too_many_inputs")
