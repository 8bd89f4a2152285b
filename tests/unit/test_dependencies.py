"""Failing soft on Redis: the breaker's states and log throttling, and what the cache and the
rate limiter do when their Redis refuses connections (a closed loopback port, no fakes)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.backoff import ConstantBackoff

from modelserve.cache import ResponseCache
from modelserve.config_sections import CacheSettings, RateLimits, RateLimitSettings
from modelserve.dependencies import DependencyHealth
from modelserve.security import KeyInfo, LimitsUnavailable, RateLimiter
from tests.conftest import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, errors: list[int], **extra: object) -> DependencyHealth:
    return DependencyHealth("redis-under-test", required=True, backoff=ConstantBackoff(1.0),
                            clock=clock, on_error=lambda: errors.append(1),
                            log_interval=30.0, **extra)  # type: ignore[arg-type]


def test_breaker_backs_off_then_lets_one_attempt_through() -> None:
    clock, errors = Clock(), []
    health = breaker(clock, errors)
    assert health.up and health.should_try() and health.retry_after() == 0
    health.failed(ConnectionError("refused"))
    assert not health.up and errors == [1]
    assert not health.should_try() and health.retry_after() == 1.0
    clock.now += 1.0
    assert health.should_try()  # one attempt is due ...
    assert not health.should_try()  # ... and holds the others off while it runs
    health.failed(ConnectionError("refused"))
    clock.now += 1.0
    assert health.should_try()
    health.succeeded()
    assert health.up and health.should_try() and errors == [1, 1]


def test_breaker_logs_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock, errors = Clock(), []
    health = breaker(clock, errors)
    with caplog.at_level(logging.WARNING, logger="modelserve.dependencies"):
        for _ in range(50):
            health.failed(ConnectionError("refused"))
            clock.now += 0.5
        assert len(caplog.records) == 1  # 25 s of failures: one line
        clock.now += 10
        health.failed(ConnectionError("refused"))
        assert len(caplog.records) == 2 and "49 more errors" in caplog.records[1].message
        health.succeeded()
        assert "available again after 51 failed operations" in caplog.records[2].message
    assert len(errors) == 51  # every failure is counted, logged or not


def test_breaker_check_probes_and_reads_false_as_down() -> None:
    clock, errors = Clock(), []
    answers: list[object] = [False]

    async def probe() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    health = breaker(clock, errors, probe=probe)

    async def scenario() -> list[bool]:
        states = [await health.check()]  # `limits`' check() answers False
        states.append(await health.check())  # within the backoff: not probed again
        clock.now += 1.0
        answers.append(ConnectionError("refused"))
        states.append(await health.check())
        clock.now += 1.0
        answers.append(True)
        states.append(await health.check())
        return states

    assert asyncio.run(scenario()) == [False, False, False, True]
    assert len(errors) == 2 and not answers


def dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: refused at once


def test_cache_on_unreachable_redis_is_a_miss() -> None:
    errors: list[int] = []
    cache = ResponseCache(CacheSettings(enabled=True, url=dead_redis()),
                          on_error=lambda: errors.append(1))

    async def scenario() -> tuple[bytes | None, bool, bytes | None]:
        try:
            return (await cache.get("k"), await cache.put("k", b"v" * 2000),
                    await cache.get("k"))
        finally:
            await cache.close()

    assert asyncio.run(scenario()) == (None, False, None)
    assert cache.health is not None and not cache.health.up
    assert errors == [1]  # the later calls were skipped while backing off, not retried


KEY = KeyInfo(id="k1", scope="user",
              limits=RateLimits(requests_per_minute=5, tokens_per_minute=1000,
                                concurrent_requests=2))


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_rate_limits_on_unreachable_redis_follow_the_policy(policy: str) -> None:
    settings = RateLimitSettings.model_validate({"storage": dead_redis(),
                                                 "on_storage_error": policy})
    limiter = RateLimiter(settings, request_timeout=60)
    assert limiter.health is not None and limiter.health.required == (policy == "fail_closed")

    async def scenario() -> list[object]:
        outcomes: list[object] = []
        try:
            for _ in range(2):  # the first tries Redis, the second is refused by the breaker
                try:
                    outcomes.append(await limiter.check_request(KEY, {}))
                    outcomes.append((await limiter.admit(KEY, "m", 10, 10)).enforced)
                except LimitsUnavailable as exc:
                    outcomes.append(exc.retry_after >= 0)
            await limiter.settle((await limiter.admit(KEY, "m", 1, 1)), 5)
        except LimitsUnavailable:
            outcomes.append("refused")
        finally:
            await limiter.close()
        return outcomes

    expected = [False, False] * 2 if policy == "fail_open" else [True, True, "refused"]
    assert asyncio.run(scenario()) == expected
