"""The response cache: LRU + TTL in memory (cachetools) or in Redis, shared by replicas.

Only deterministic requests are stored. A key is the SHA-256 of the canonical request (every
field that can change the output), the route, the model's revision (its file identity, so a
reload of a different file never serves stale answers) and, optionally, the API key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

from cachetools import TTLCache

from modelserve.config_sections import CacheSettings

logger = logging.getLogger(__name__)
_PREFIX = "modelserve:cache:"


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...


class _BoundedTTLCache(TTLCache[str, bytes]):
    """TTLCache bounded in bytes (its maxsize with getsizeof=len) and in entry count."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl, getsizeof=len)
        self.max_entries = max_entries

    def __setitem__(self, key: str, value: bytes) -> None:
        while key not in self and len(self) >= self.max_entries:
            self.popitem()  # the least recently used
        super().__setitem__(key, value)


class MemoryBackend:
    def __init__(self, settings: CacheSettings) -> None:
        self._entries = _BoundedTTLCache(settings.max_entries, settings.max_bytes,
                                         settings.ttl_seconds)

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def put(self, key: str, value: bytes) -> None:
        if len(value) <= self._entries.maxsize:
            self._entries[key] = value

    async def close(self) -> None:
        self._entries.clear()


class RedisBackend:
    """Entries expire by TTL; size is Redis's to bound (maxmemory + allkeys-lru)."""

    def __init__(self, settings: CacheSettings) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(settings.url, socket_timeout=2,
                                           socket_connect_timeout=2)
        self._ttl_ms = max(int(settings.ttl_seconds * 1000), 1)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(_PREFIX + key)
        except Exception as exc:  # an unreachable cache is a miss, not a failed request
            logger.warning("cache get failed: %s", exc)
            return None
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def put(self, key: str, value: bytes) -> None:
        try:
            await self._redis.set(_PREFIX + key, value, px=self._ttl_ms)
        except Exception as exc:
            logger.warning("cache put failed: %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


class ResponseCache:
    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.backend: CacheBackend = (MemoryBackend(settings)
                                      if settings.url.startswith("memory://")
                                      else RedisBackend(settings))

    def key(self, route: str, request: dict[str, Any], revision: str,
            key_id: str | None) -> str:
        canonical = json.dumps(
            {"route": route, "revision": revision, "request": request,
             "scope": key_id if self.settings.per_key else None},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def get(self, key: str) -> bytes | None:
        return await self.backend.get(key)

    async def put(self, key: str, value: bytes) -> None:
        if len(value) <= self.settings.max_entry_bytes:
            await self.backend.put(key, value)

    async def close(self) -> None:
        await self.backend.close()
