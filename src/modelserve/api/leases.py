"""Acquire a model for one request: its runtime, held by a lease until the response ends.

The lease is released by RequestContext.finish (api/observe.py), which runs after the last
byte of a streamed body, so a model is never unloaded under a stream.
"""

from __future__ import annotations

from typing import TypeVar, cast

from fastapi import Request

from modelserve.api.errors import APIError, bad_request, model_not_found
from modelserve.api.observe import context
from modelserve.kinds import ModelKind, ModelRuntime
from modelserve.registry import (
    Lease,
    ModelNotFound,
    ModelRegistry,
    ModelState,
    ModelUnavailable,
    Runtime,
)

R = TypeVar("R", bound=ModelRuntime)


async def acquire(request: Request, name: str) -> Runtime:
    """The model's runtime, held for this request (the lease ends with the response)."""
    return (await _lease(request, name)).runtime


async def acquire_kind(request: Request, name: str, kind: ModelKind[R],
                       use: str | None = None) -> R:
    """The model's runtime if the model is of `kind` (else a 400 naming what it is), held
    for this request. `use` overrides what the error says the kind is for."""
    lease = await _lease(request, name)
    actual = lease.loaded.spec.kind  # the spec this runtime was built from
    if actual != kind.name:
        raise wrong_kind(name, actual, use or kind.use)
    # The registry built this runtime with `kind.build`, so it is the kind's runtime class.
    return cast(R, lease.runtime)


async def _lease(request: Request, name: str) -> Lease:
    ctx = context(request)
    ctx.model = name
    registry: ModelRegistry = request.app.state.registry
    try:
        lease = await registry.acquire(name)
    except ModelNotFound:
        raise model_not_found(name) from None
    except ModelUnavailable as exc:
        loading = exc.state is ModelState.LOADING
        raise APIError(503, f"The model '{name}' is not available: {exc}. Please retry shortly.",
                       type="server_error", param="model",
                       code="model_loading" if loading else "model_unavailable",
                       headers={"Retry-After": "5" if loading else "10"}) from None
    ctx.leases.append(lease)
    return lease


def wrong_kind(name: str, kind: str, wanted: str) -> APIError:
    return bad_request(f"The model '{name}' is a {kind} model and cannot be used for {wanted}.",
                       param="model", code="model_not_supported")
