"""Per-key rate limits for one request: admit before the work (429 when over), settle after.

Requests per minute are counted earlier, by the Authenticator middleware (api/auth.py); this
is the part that needs the request's size: tokens per minute and concurrent requests.
"""

from __future__ import annotations

import math

from fastapi import Request

from modelserve.api.errors import APIError
from modelserve.api.observe import RequestContext, context
from modelserve.security import LimitsUnavailable, RateLimited, RateLimiter


async def admit(request: Request, prompt_tokens: int, max_new_tokens: int) -> None:
    """Count the request against its key's limits (429 when over), now that its size is
    known; what it really used is settled when the response ends."""
    ctx = context(request)
    ctx.prompt_tokens = prompt_tokens
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is None or ctx.key is None or ctx.model is None:
        return
    try:
        admission = await limiter.admit(ctx.key, ctx.model, prompt_tokens, max_new_tokens)
    except RateLimited as exc:
        request.app.state.metrics.rate_limited.labels(exc.limit).inc()
        raise rate_limited(exc) from None
    except LimitsUnavailable as exc:
        raise limits_unavailable(exc) from None
    ctx.headers.update(admission.headers)
    ctx.limits_unenforced |= not admission.enforced

    async def settle(done: RequestContext) -> None:
        # Prompt tokens learnt after admission (a vision prompt's image tokens, known only
        # once encoded) are charged here, with the completion tokens.
        late = max((done.prompt_tokens or 0) - prompt_tokens, 0)
        await limiter.settle(admission, (done.completion_tokens or 0) + late)

    ctx.on_finish.append(settle)


def rate_limited(exc: RateLimited) -> APIError:
    # OpenAI names the exhausted limit in `type`: "requests" or "tokens".
    kind = exc.limit if exc.limit in ("requests", "tokens") else "rate_limit_error"
    return APIError(429, str(exc), type=kind, code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(math.ceil(exc.retry_after), 1))})


def limits_unavailable(exc: LimitsUnavailable) -> APIError:
    """fail_closed with the limits' storage down: the request cannot be checked, so it is
    refused until the storage answers again."""
    return APIError(503, "Rate limits cannot be checked right now (their storage is "
                    "unavailable). Please retry shortly.", type="server_error",
                    code="service_unavailable",
                    headers={"Retry-After": str(max(math.ceil(exc.retry_after), 1))})
