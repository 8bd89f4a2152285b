"""Where `response_format: url` images live until they expire: memory or a directory."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# Ids are random and unguessable (the URL is the only key), and this shape keeps a disk
# store's file names safe: no separators, no dots.
_ID = re.compile(r"^img-[A-Za-z0-9_-]{16,64}$")

Clock = Callable[[], float]


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    format: str  # png | jpeg | webp
    expires: float

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


class ImageStore(Protocol):
    def put(self, data: bytes, format: str) -> str: ...

    def get(self, image_id: str) -> StoredImage | None: ...


def new_id() -> str:
    return "img-" + secrets.token_urlsafe(24)


class MemoryImageStore:
    """A dict with a TTL and a byte cap (the oldest images are dropped first)."""

    def __init__(self, ttl: float, max_bytes: int, clock: Clock = time.monotonic) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, StoredImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, format: str) -> str:
        image_id = new_id()
        with self._lock:
            self._expire(self._clock())
            self._items[image_id] = StoredImage(data, format, self._clock() + self.ttl)
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                self._drop(next(iter(self._items)))
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        with self._lock:
            self._expire(self._clock())
            return self._items.get(image_id)

    def __len__(self) -> int:
        return len(self._items)

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order (one TTL for all), so stop at the first live one.
        while self._items:
            oldest = next(iter(self._items))
            if self._items[oldest].expires > now:
                break
            self._drop(oldest)

    def _drop(self, image_id: str) -> None:
        self._bytes -= len(self._items.pop(image_id).data)


class DiskImageStore:
    """One file per image, `<id>.<format>`; expiry by file mtime, so it survives restarts and
    can be shared by several servers (or cleaned by a cron job)."""

    def __init__(self, directory: Path, ttl: float, clock: Clock = time.time) -> None:
        self.directory = directory
        self.ttl = ttl
        self._clock = clock
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, format: str) -> str:
        image_id = new_id()
        tmp = self.directory / f".{image_id}.tmp"
        tmp.write_bytes(data)
        now = self._clock()
        os.utime(tmp, (now, now))  # the file's age is on the store's clock
        tmp.replace(self.directory / f"{image_id}.{format}")  # readers never see half a file
        self._sweep()
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        if not _ID.match(image_id):
            return None
        for format in MEDIA_TYPES:
            path = self.directory / f"{image_id}.{format}"
            try:
                expires = path.stat().st_mtime + self.ttl
                if expires <= self._clock():
                    path.unlink(missing_ok=True)
                    return None
                return StoredImage(path.read_bytes(), format, expires)
            except FileNotFoundError:
                continue
        return None

    def _sweep(self) -> None:
        now = self._clock()
        for path in self.directory.glob("img-*.*"):
            try:
                if path.stat().st_mtime + self.ttl <= now:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                pass


def make_store(storage: str, ttl: float, max_bytes: int) -> ImageStore:
    if storage == "memory":
        return MemoryImageStore(ttl, max_bytes)
    return DiskImageStore(Path(storage).expanduser(), ttl)
