import asyncio

from modelserve.cache import ResponseCache
from modelserve.config_sections import CacheSettings


def test_memory_cache_bounds_entries_and_bytes() -> None:
    cache = ResponseCache(CacheSettings(max_entries=2, max_bytes=2048, max_entry_bytes=1500))

    async def scenario() -> list[bytes | None]:
        await cache.put("a", b"1" * 100)
        await cache.put("b", b"2" * 100)
        await cache.get("a")  # `a` is now the more recently used
        await cache.put("c", b"3" * 100)  # over max_entries: `b` goes
        await cache.put("big", b"4" * 1600)  # over max_entry_bytes: never stored
        await cache.put("d", b"5" * 1400)  # over max_bytes in total: LRU entries go
        return [await cache.get(k) for k in ("a", "b", "c", "big", "d")]

    a, b, c, big, d = asyncio.run(scenario())
    assert b is None and big is None and d == b"5" * 1400
    assert (a is None) or (c is None)  # room was made for `d`


def test_cache_key_is_canonical_and_scoped() -> None:
    shared = ResponseCache(CacheSettings())
    scoped = ResponseCache(CacheSettings(per_key=True))
    one = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    two = dict(reversed(list(one.items())))
    assert shared.key("chat", one, "r1", "k1") == shared.key("chat", two, "r1", "k2")
    assert shared.key("chat", one, "r1", None) != shared.key("chat", one, "r2", None)
    assert shared.key("chat", one, "r1", None) != shared.key("completions", one, "r1", None)
    assert scoped.key("chat", one, "r1", "k1") != scoped.key("chat", one, "r1", "k2")
