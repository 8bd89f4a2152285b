"""External dependencies (Redis, for the response cache and the rate limits): fail soft.

Each dependency has a `DependencyHealth`, a small circuit breaker the callers consult: while
the dependency works every operation goes through; after a failure it is `down`, operations
are skipped (the caller degrades: a cache miss, or the rate-limit policy) and one attempt is
let through after a backoff that grows with each failure (redis-py's jittered exponential
backoff, capped at a few seconds, so traffic recovers shortly after the dependency returns).
Nothing here blocks the event loop: skipped operations cost nothing, and an attempt is bounded
by the Redis client's socket timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limits.errors import StorageError
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff, EqualJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# What a failing Redis raises: redis-py's errors, `limits`' wrapped ones, socket errors.
STORAGE_ERRORS: tuple[type[Exception], ...] = (RedisError, StorageError, OSError)
LOG_INTERVAL_SECONDS = 30.0
# Backoff between attempts while down, with equal jitter (so replicas do not knock in step):
# 0.13-0.25 s after the first failure, then 0.25-0.5, 0.5-1, and 1-2 s from the fourth on.
RETRY_BASE_SECONDS = 0.125
RETRY_CAP_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 1.0


def redis_client_options() -> dict[str, Any]:
    """Options for every Redis client the server makes.

    Short timeouts: a request must never wait long on a dead Redis (redis-py's default is
    10 retries with backoff; the breaker below does the waiting instead, without holding a
    request). One immediate retry on a connection error: after a Redis restart the pooled
    connections are dead, and the retry replaces one transparently instead of failing the
    first request on each.
    """
    return {"socket_connect_timeout": 1.0, "socket_timeout": 2.0,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))}


class DependencyHealth:
    """One dependency's state, as its operations find it (see the module docstring)."""

    def __init__(self, name: str, *, required: bool,
                 on_error: Callable[[], None] = lambda: None,
                 probe: Callable[[], Awaitable[object]] | None = None,
                 backoff: AbstractBackoff | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 log_interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.name = name
        self.required = required  # requests cannot be served while it is down
        self.probe = probe  # a cheap round trip (PING), for readiness
        self._on_error = on_error
        self._backoff = backoff or EqualJitterBackoff(cap=RETRY_CAP_SECONDS,
                                                      base=RETRY_BASE_SECONDS)
        self._clock = clock
        self._log_interval = log_interval
        self._failures = 0
        self._retry_at = 0.0
        self._logged_at = -math.inf
        self._unlogged = 0

    @property
    def up(self) -> bool:
        return self._failures == 0

    def retry_after(self) -> float:
        """Seconds until the next attempt is let through (0 while up)."""
        return 0.0 if self.up else max(self._retry_at - self._clock(), 0.0)

    def should_try(self) -> bool:
        """Up, or down and due for another attempt; granting one holds the others off until
        it has had time to answer (it then calls `failed` or `succeeded`)."""
        if self.up:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._backoff.compute(self._failures)
        return True

    def failed(self, error: BaseException) -> None:
        self._failures += 1
        self._retry_at = self._clock() + self._backoff.compute(self._failures)
        self._on_error()
        now = self._clock()
        if now - self._logged_at < self._log_interval:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more errors since the last report)" if self._unlogged else ""
        logger.warning("%s is unavailable: %s: %s%s; retrying with backoff", self.name,
                       type(error).__name__, error, more)
        self._logged_at, self._unlogged = now, 0

    def succeeded(self) -> None:
        if self._failures:
            logger.warning("%s is available again after %d failed operations", self.name,
                           self._failures)
            self._failures, self._unlogged = 0, 0
            self._logged_at = -math.inf

    async def check(self) -> bool:
        """For readiness: probe when an attempt is due (always while up), else report the
        known state. A failed probe counts like any failed operation."""
        if self.probe is None or not self.should_try():
            return self.up
        try:
            await _bounded(self.probe(), PROBE_TIMEOUT_SECONDS)
        except STORAGE_ERRORS as exc:  # TimeoutError (the probe's bound) is an OSError
            self.failed(exc)
            return False
        self.succeeded()
        return True


async def _bounded(work: Awaitable[object], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        result = await work
    if result is False:  # `limits`' storage check() answers False instead of raising
        raise StorageError(ConnectionError("the storage check failed"))
