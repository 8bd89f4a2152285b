"""Stored responses (`store: true`): the Response object and the input items that led to it,
for `GET /v1/responses/{id}`, its input items, and `previous_response_id`.

Each entry belongs to the API key that made it (its id: the key's name or a hash of it;
None when the server has no keys, so everything has one owner); another key sees nothing,
exactly as if the id did not exist. In memory an entry lives `ttl_seconds` and the store is
bounded in count and bytes (least recently used first out); with the response cache on Redis,
entries go to the same Redis with the same TTL, so every replica finds them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from modelserve.api.errors import APIError
from modelserve.cache import MemoryBackend, RedisBackend
from modelserve.config_sections import CacheSettings, ResponsesSettings
from modelserve.dependencies import STORAGE_ERRORS

logger = logging.getLogger(__name__)
_PREFIX = "modelserve:responses:"


@dataclass
class Stored:
    owner: str | None
    response: dict[str, Any]  # the Response object, as it was answered
    # Every item the model read: the earlier responses' (chained by previous_response_id)
    # inputs and outputs, then this request's input, in order.
    items: list[dict[str, Any]]

    def to_bytes(self) -> bytes:
        return json.dumps({"owner": self.owner, "response": self.response,
                           "items": self.items}, separators=(",", ":"),
                          ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Stored:
        raw = json.loads(data)
        return cls(raw["owner"], raw["response"], raw["items"])


class Backend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def close(self) -> None: ...


def unavailable() -> APIError:
    return APIError(503, "The response store (Redis) is not available. Please retry shortly.",
                    type="server_error", code="store_unavailable",
                    headers={"Retry-After": "1"})


class ResponseStore:
    def __init__(self, settings: ResponsesSettings, cache: CacheSettings) -> None:
        self.backend: Backend
        if cache.enabled and not cache.url.startswith("memory://"):
            self.backend = RedisBackend(cache.url, settings.ttl_seconds, _PREFIX)
        else:
            self.backend = MemoryBackend(settings.max_stored, settings.max_bytes,
                                         settings.ttl_seconds)

    async def put(self, stored: Stored) -> None:
        """Keep a response; a store that fails only loses it (the answer already went out)."""
        try:
            await self.backend.put(stored.response["id"], stored.to_bytes())
        except STORAGE_ERRORS:
            logger.exception("could not store response %s", stored.response["id"])

    async def get(self, response_id: str, owner: str | None) -> Stored | None:
        """The entry, if it exists, has not expired, and belongs to `owner`."""
        try:
            data = await self.backend.get(response_id)
        except STORAGE_ERRORS as exc:
            raise unavailable() from exc
        if data is None:
            return None
        stored = Stored.from_bytes(data)
        return stored if stored.owner == owner else None

    async def delete(self, response_id: str, owner: str | None) -> bool:
        if await self.get(response_id, owner) is None:
            return False
        try:
            return await self.backend.delete(response_id)
        except STORAGE_ERRORS as exc:
            raise unavailable() from exc

    async def close(self) -> None:
        await self.backend.close()
