"""API keys (hashed, constant-time) and per-key rate limits on the `limits` library.

Keys are kept only as SHA-256 digests; a key is known in logs by a short id derived from
its digest (or the name the config gives it), never by the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from pydantic import TypeAdapter, ValidationError

from modelserve.config import Settings
from modelserve.config_sections import ApiKey, RateLimits, RateLimitSettings
from modelserve.dependencies import STORAGE_ERRORS, DependencyHealth, redis_client_options
from modelserve.sources import ConfigError

logger = logging.getLogger(__name__)
Scope = Literal["user", "admin"]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    id: str
    scope: Scope
    limits: RateLimits | None = None
    model_limits: dict[str, RateLimits] = field(default_factory=dict)


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_digest: dict[str, KeyInfo] = {}
        for key in keys:
            hashed = key.sha256 or digest(key.key or "")
            self._by_digest[hashed] = KeyInfo(
                id=key.name or f"key-{digest(hashed)[:10]}", scope=key.scope,
                limits=key.limits, model_limits=dict(key.model_limits))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys = list(settings.security.api_keys)
        if settings.api_key:
            keys.append(ApiKey(key=settings.api_key, scope="admin", name="env-admin"))
        if settings.security.api_keys_file:
            keys += _read_key_file(Path(settings.security.api_keys_file).expanduser())
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    def authenticate(self, presented: str) -> KeyInfo | None:
        """Compare the presented key's digest with every known one, in constant time."""
        wanted = digest(presented).encode()
        found = None
        for hashed, info in self._by_digest.items():
            if hmac.compare_digest(wanted, hashed.encode()):
                found = info
        return found


def _read_key_file(path: Path) -> list[ApiKey]:
    """A mounted secret: a YAML list of key entries, or one plain key per line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read api_keys_file {path}: {exc}") from exc
    data = yaml.safe_load(text)
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        try:
            return TypeAdapter(list[ApiKey]).validate_python(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid api_keys_file {path}: {exc}") from exc
    lines = [line.strip() for line in text.splitlines()]
    return [ApiKey(key=line) for line in lines if line and not line.startswith("#")]


# -- rate limits ----------------------------------------------------------------------------


class RateLimited(Exception):
    def __init__(self, limit: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class LimitsUnavailable(Exception):
    """The limits' storage is unavailable and the policy is fail_closed: refuse (503)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("rate-limit storage unavailable")
        self.retry_after = retry_after


def _duration(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `120ms`."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class Admission:
    """One request's claims on its key's limits, settled when it finishes."""

    key: KeyInfo
    model: str
    enforced: bool = True  # False: the storage failed and the policy let it through unlimited
    headers: dict[str, str] = field(default_factory=dict)
    concurrency_slots: list[str] = field(default_factory=list)
    # the tokens-per-minute windows this request counts in, charged again on settling
    token_windows: list[tuple[RateLimitItem, tuple[str, ...]]] = field(default_factory=list)


class Concurrency:
    """Requests in flight per key: a counter in memory or, shared, in Redis."""

    def __init__(self, url: str) -> None:
        self._local: dict[str, int] = {}
        self._redis: Any = None
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis.asyncio as redis

            self._redis = redis.Redis.from_url(url, **redis_client_options())

    async def acquire(self, slot: str, limit: int, ttl: float) -> bool:
        if self._redis is None:
            if self._local.get(slot, 0) >= limit:
                return False
            self._local[slot] = self._local.get(slot, 0) + 1
            return True
        key = f"modelserve:concurrency:{slot}"
        count = int(await self._redis.incr(key))
        await self._redis.expire(key, int(ttl) + 60)  # a crashed replica cannot leak forever
        if count > limit:
            await self._redis.decr(key)
            return False
        return True

    async def release(self, slot: str) -> None:
        if self._redis is None:
            self._local[slot] = max(self._local.get(slot, 1) - 1, 0)
        else:
            await self._redis.decr(f"modelserve:concurrency:{slot}")

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class RateLimiter:
    """Per-key limits. With a shared (Redis) storage, a storage failure never becomes a 500:
    `on_storage_error` decides (fail_open: the request goes unlimited; fail_closed:
    LimitsUnavailable), and `health` backs off from the failing storage."""

    def __init__(self, settings: RateLimitSettings, request_timeout: float,
                 on_error: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        url = settings.storage
        options: dict[str, Any] = {}
        shared = url.startswith(("redis", "unix"))
        if shared:
            # the redis client we already depend on, with the server's timeouts and retry
            options = {"implementation": "redispy", **redis_client_options()}
        storage = storage_from_string(f"async+{url}", wrap_exceptions=True, **options)
        assert isinstance(storage, AsyncStorage)
        self._window = SlidingWindowCounterRateLimiter(storage)
        self._concurrency = Concurrency(url)
        self._timeout = request_timeout
        self.health: DependencyHealth | None = None
        if shared:
            self.health = DependencyHealth(
                "the rate-limit storage (Redis)", on_error=on_error, probe=storage.check,
                required=settings.on_storage_error == "fail_closed")

    def limits_for(self, key: KeyInfo, model: str | None) -> tuple[RateLimits, RateLimits | None]:
        base = key.limits or self.settings.default
        if model is None:
            return base, None
        return base, key.model_limits.get(model) or self.settings.models.get(model)

    async def check_request(self, key: KeyInfo, headers: dict[str, str]) -> bool:
        """Count one request against the key's requests-per-minute; fills the reply's
        x-ratelimit-* headers (also when it raises RateLimited). False: not enforced (the
        storage is unavailable, fail_open)."""
        return await self._guarded(lambda: self._check_request(key, headers), enforcing=True)

    async def _check_request(self, key: KeyInfo, headers: dict[str, str]) -> None:
        base, _ = self.limits_for(key, None)
        if base.requests_per_minute:
            item = RateLimitItemPerMinute(base.requests_per_minute)
            ok = await self._window.hit(item, key.id, "requests")
            headers.update(await self._headers(item, "requests", key.id, "requests"))
            if not ok:
                raise RateLimited("requests", f"Rate limit reached for requests per minute "
                                  f"({base.requests_per_minute}).", await self._wait(item, key.id,
                                                                                     "requests"))
        if base.tokens_per_minute:
            item = RateLimitItemPerMinute(base.tokens_per_minute)
            headers.update(await self._headers(item, "tokens", key.id, "tokens"))

    async def admit(self, key: KeyInfo, model: str, prompt_tokens: int, max_new_tokens: int
                    ) -> Admission:
        """Check tokens and concurrency before the work starts; raises RateLimited."""
        admission = Admission(key, model)
        if not await self._guarded(
                lambda: self._admit(admission, prompt_tokens, max_new_tokens), enforcing=True):
            # What it claimed before the storage failed is not given back (the storage is
            # failing); a concurrency claim expires with its TTL.
            return Admission(key, model, enforced=False)
        return admission

    async def _admit(self, admission: Admission, prompt_tokens: int, max_new_tokens: int
                     ) -> None:
        key, model = admission.key, admission.model
        base, per_model = self.limits_for(key, model)
        scopes: list[tuple[RateLimits, tuple[str, ...], bool]] = [(base, (key.id,), False)]
        if per_model is not None:
            scopes.append((per_model, (key.id, f"model:{model}"), True))
        try:
            for limits, ids, model_scope in scopes:
                await self._admit_scope(admission, limits, ids, prompt_tokens, max_new_tokens,
                                        model_scope)
        except RateLimited:
            await self._settle(admission, 0)
            raise

    async def _guarded(self, work: Callable[[], Awaitable[None]], enforcing: bool) -> bool:
        """Run storage work under the failure policy; True when it ran to the end. A request
        the policy lets through unchecked gets False; fail_closed raises LimitsUnavailable."""
        health = self.health
        if health is None:  # in memory: nothing to fail
            await work()
            return True
        if health.should_try():
            try:
                await work()
            except RateLimited:
                health.succeeded()
                raise
            except STORAGE_ERRORS as exc:
                health.failed(exc)
            else:
                health.succeeded()
                return True
        if enforcing and self.settings.on_storage_error == "fail_closed":
            raise LimitsUnavailable(health.retry_after())
        return False

    async def _admit_scope(self, admission: Admission, limits: RateLimits, ids: tuple[str, ...],
                           prompt: int, new: int, model_scope: bool) -> None:
        if model_scope and limits.requests_per_minute:
            item = RateLimitItemPerMinute(limits.requests_per_minute)
            if not await self._window.hit(item, *ids, "requests"):
                raise RateLimited("requests", "Rate limit reached for requests per minute "
                                  f"on model '{admission.model}' ({limits.requests_per_minute}).",
                                  await self._wait(item, *ids, "requests"))
        if limits.tokens_per_minute:
            item = RateLimitItemPerMinute(limits.tokens_per_minute)
            cost = prompt + new
            if cost > limits.tokens_per_minute or not await self._window.test(
                    item, *ids, "tokens", cost=cost):
                raise RateLimited("tokens", f"Rate limit reached for tokens per minute "
                                  f"({limits.tokens_per_minute}): this request may use {cost} "
                                  "(prompt + max_tokens).", await self._wait(item, *ids, "tokens"))
            await self._window.hit(item, *ids, "tokens", cost=max(prompt, 1))
            admission.token_windows.append((item, ids))
            if not model_scope:
                admission.headers.update(await self._headers(item, "tokens", *ids, "tokens"))
        if limits.concurrent_requests:
            slot = ":".join(ids)
            if not await self._concurrency.acquire(slot, limits.concurrent_requests,
                                                   self._timeout):
                raise RateLimited("concurrency", "Too many concurrent requests for this key "
                                  f"({limits.concurrent_requests}).", 1.0)
            admission.concurrency_slots.append(slot)

    async def settle(self, admission: Admission, completion_tokens: int) -> None:
        """After the response: charge the tokens really generated, free concurrency slots.
        Never raises for the storage: the response is already out."""
        await self._guarded(lambda: self._settle(admission, completion_tokens),
                            enforcing=False)

    async def _settle(self, admission: Admission, completion_tokens: int) -> None:
        while admission.concurrency_slots:
            await self._concurrency.release(admission.concurrency_slots[-1])
            admission.concurrency_slots.pop()
        if completion_tokens <= 0:
            return
        for item, ids in admission.token_windows:
            await self._window.hit(item, *ids, "tokens", cost=completion_tokens)

    async def _headers(self, item: RateLimitItem, kind: str, *ids: str) -> dict[str, str]:
        stats = await self._window.get_window_stats(item, *ids)
        return {f"x-ratelimit-limit-{kind}": str(item.amount),
                f"x-ratelimit-remaining-{kind}": str(max(stats.remaining, 0)),
                f"x-ratelimit-reset-{kind}": _duration(stats.reset_time - time.time())}

    async def _wait(self, item: RateLimitItem, *ids: str) -> float:
        stats = await self._window.get_window_stats(item, *ids)
        return max(stats.reset_time - time.time(), 1.0)

    async def close(self) -> None:
        await self._concurrency.close()
