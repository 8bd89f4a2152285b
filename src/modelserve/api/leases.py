"""Acquire a model for one request: its front, held by a lease until the response ends.

The lease is released by RequestContext.finish (api/observe.py), which runs after the last
byte of a streamed body, so a model is never unloaded under a stream.
"""

from __future__ import annotations

from typing import TypeVar, cast

from fastapi import Request

from modelserve.api.errors import APIError, bad_request, model_not_found, model_unavailable
from modelserve.api.observe import context
from modelserve.kinds import ModelFront, ModelKind
from modelserve.registry import Lease, ModelNotFound, ModelRegistry, ModelState, ModelUnavailable

F = TypeVar("F", bound=ModelFront)

# Time kept back from a request's own deadline when it waits for a model, to answer in.
_ANSWER_MARGIN_S = 1.0


async def acquire_kind(request: Request, name: str, kind: ModelKind[F],
                       use: str | None = None) -> F:
    """The model's front if the model is of `kind` (else a 400 naming what it is), held
    for this request. `use` overrides what the error says the kind is for."""
    lease = await _lease(request, name)
    actual = lease.loaded.spec.kind  # the spec this front was built from
    if actual != kind.name:
        raise wrong_kind(name, actual, use or kind.use)
    # The kind's serving wiring built this front, so it is the kind's front type.
    return cast(F, lease.front)


async def _lease(request: Request, name: str) -> Lease:
    ctx = context(request)
    ctx.model = name
    registry: ModelRegistry = request.app.state.registry
    deadline = ctx.deadline - _ANSWER_MARGIN_S if ctx.deadline is not None else None
    try:
        lease = await registry.acquire(name, deadline)
    except ModelNotFound:
        raise model_not_found(name) from None
    except ModelUnavailable as exc:
        raise model_unavailable(str(exc), exc.retry_after, name=name,
                                loading=exc.state is ModelState.LOADING) from None
    ctx.leases.append(lease)
    return lease


def wrong_kind(name: str, kind: str, wanted: str) -> APIError:
    return bad_request(f"The model '{name}' is a {kind} model and cannot be used for {wanted}.",
                       param="model", code="model_not_supported")
