"""The response cache: LRU + TTL in memory (cachetools) or in Redis, shared by replicas.

Only deterministic requests are stored. A key is the SHA-256 of the canonical request (every
field that can change the output), the route, the model's revision (its file identity, so a
reload of a different file never serves stale answers) and, optionally, the API key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from cachetools import TTLCache

from modelserve.config_sections import CacheSettings
from modelserve.dependencies import STORAGE_ERRORS, DependencyHealth, redis_client_options

logger = logging.getLogger(__name__)
_PREFIX = "modelserve:cache:"


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...


class BoundedTTLCache(TTLCache[str, bytes]):
    """TTLCache bounded in bytes (its maxsize with getsizeof=len) and in entry count."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl, getsizeof=len)
        self.max_entries = max_entries

    def __setitem__(self, key: str, value: bytes) -> None:
        while key not in self and len(self) >= self.max_entries:
            self.popitem()  # the least recently used
        super().__setitem__(key, value)


class MemoryBackend:
    """Bytes by key in this process, bounded in count and bytes, each for `ttl` seconds (the
    response cache's, and the stored Responses' when there is no Redis)."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float) -> None:
        self._entries = BoundedTTLCache(max_entries, max_bytes, ttl)

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def put(self, key: str, value: bytes) -> None:
        if len(value) <= self._entries.maxsize:
            self._entries[key] = value

    async def delete(self, key: str) -> bool:
        return self._entries.pop(key, None) is not None

    async def close(self) -> None:
        self._entries.clear()


class RedisBackend:
    """Entries expire by TTL; size is Redis's to bound (maxmemory + allkeys-lru). Errors
    propagate: ResponseCache decides what an unavailable Redis means."""

    def __init__(self, url: str, ttl: float, prefix: str = _PREFIX) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, **redis_client_options())
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._prefix + key)
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def put(self, key: str, value: bytes) -> None:
        await self._redis.set(self._prefix + key, value, px=self._ttl_ms)

    async def delete(self, key: str) -> bool:
        return bool(await self._redis.delete(self._prefix + key))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


class ResponseCache:
    def __init__(self, settings: CacheSettings,
                 on_error: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.backend: CacheBackend
        # Set for a shared (Redis) cache: an unavailable one is a miss, never a failed request.
        self.health: DependencyHealth | None = None
        if settings.url.startswith("memory://"):
            self.backend = MemoryBackend(settings.max_entries, settings.max_bytes,
                                         settings.ttl_seconds)
        else:
            redis_backend = RedisBackend(settings.url, settings.ttl_seconds)
            self.backend = redis_backend
            self.health = DependencyHealth("the response cache (Redis)", required=False,
                                           on_error=on_error, probe=redis_backend.ping)

    def key(self, route: str, request: dict[str, Any], revision: str,
            key_id: str | None) -> str:
        canonical = json.dumps(
            {"route": route, "revision": revision, "request": request,
             "scope": key_id if self.settings.per_key else None},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def get(self, key: str) -> bytes | None:
        if self.health is None:
            return await self.backend.get(key)
        if not self.health.should_try():
            return None
        try:
            found = await self.backend.get(key)
        except STORAGE_ERRORS as exc:
            self.health.failed(exc)
            return None
        self.health.succeeded()
        return found

    async def put(self, key: str, value: bytes) -> bool:
        """Store an entry; False when it was not stored (too large, or no cache to store in)."""
        if len(value) > self.settings.max_entry_bytes:
            return False
        if self.health is None:
            await self.backend.put(key, value)
            return True
        if not self.health.should_try():
            return False
        try:
            await self.backend.put(key, value)
        except STORAGE_ERRORS as exc:
            self.health.failed(exc)
            return False
        self.health.succeeded()
        return True

    async def close(self) -> None:
        await self.backend.close()
