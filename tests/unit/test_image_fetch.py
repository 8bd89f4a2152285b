"""The remote image fetcher: allowlist, address checks on every hop, pinning, limits."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from modelserve.config import ImageSettings
from modelserve.images.errors import ImageError
from modelserve.images.fetch import ImageFetcher, resolve

DNS = {"img.example.com": ["93.184.216.34"], "cdn.example.com": ["93.184.216.35"],
       "rebind.example.com": ["93.184.216.36", "127.0.0.1"],
       "meta.example.com": ["169.254.169.254"], "v6.example.com": ["2606:2800:220:1::1"]}


async def fake_resolve(host: str, port: int) -> list[str]:
    if host in DNS:
        return DNS[host]
    if host.replace(".", "").isdigit():
        return [host]
    raise OSError("no such host")


def settings(**kw: Any) -> ImageSettings:
    base: dict[str, Any] = {"allow_remote": True, "allowed_hosts": ["*.example.com"],
                            "max_bytes": 1000}
    return ImageSettings(**{**base, **kw})


def fetch(url: str, handler: Any, **kw: Any) -> bytes:
    fetcher = ImageFetcher(settings(**kw), resolver=fake_resolve,
                           transport=httpx.MockTransport(handler))
    return asyncio.run(fetcher.fetch(url))


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"IMAGE")


def test_connects_to_the_checked_address_with_the_original_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    assert fetch("https://img.example.com:8443/a.png?x=1", handler) == b"IMAGE"
    request = seen[0]
    assert request.url.host == "93.184.216.34" and request.url.port == 8443
    assert request.url.path == "/a.png" and request.url.query == b"x=1"
    assert request.headers["host"] == "img.example.com:8443"
    assert request.extensions["sni_hostname"] == "img.example.com"
    assert fetch("http://v6.example.com/a.png", handler) == b"IMAGE"
    assert seen[1].url.host == "2606:2800:220:1::1"


@pytest.mark.parametrize(("url", "says"), [
    ("http://other.org/a.png", "allowlist"),
    ("http://127.0.0.1/a.png", "non-public address (127.0.0.1)"),  # allowlisted, still no
    ("http://rebind.example.com/a.png", "non-public address (127.0.0.1)"),
    ("http://meta.example.com/latest/meta-data", "non-public address (169.254.169.254)"),
    ("http://nowhere.example.com/a.png", "does not resolve"),
    ("file:///etc/passwd", "must be http(s)"),
    ("http://[::1/a.png", "malformed"),
])
def test_refused_before_any_request(url: str, says: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be made")

    with pytest.raises(ImageError, match=re.escape(says)):
        fetch(url, handler, allowed_hosts=["*.example.com", "127.0.0.1"])


def test_every_redirect_hop_is_checked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(302, headers={"location": "http://meta.example.com/x"})
        raise AssertionError("the metadata address must not be reached")

    with pytest.raises(ImageError, match=re.escape("169.254.169.254")):
        fetch("http://img.example.com/start", handler)


def test_relative_redirect_is_followed_and_hops_are_limited() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(301, headers={"location": "/final.png"})
        if request.url.path == "/loop":
            return httpx.Response(302, headers={"location": "/loop"})
        return ok(request)

    assert fetch("http://img.example.com/start", handler) == b"IMAGE"
    with pytest.raises(ImageError, match="redirected more than 2 times"):
        fetch("http://img.example.com/loop", handler, max_redirects=2)


def test_http_errors_sizes_and_trusted_hosts() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield b"x" * 600

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/missing":
            return httpx.Response(404)
        if request.url.path == "/declared":
            return httpx.Response(200, headers={"content-length": "5000"}, content=b"x" * 5000)
        if request.url.path == "/streamed":
            return httpx.Response(200, content=chunks())
        return ok(request)

    with pytest.raises(ImageError, match="HTTP 404"):
        fetch("http://img.example.com/missing", handler)
    with pytest.raises(ImageError, match="limit of 1000 bytes"):
        fetch("http://img.example.com/declared", handler)
    with pytest.raises(ImageError, match="limit of 1000 bytes"):
        fetch("http://img.example.com/streamed", handler)
    assert fetch("http://rebind.example.com/a.png", handler,
                 trusted_private_hosts=["rebind.example.com"]) == b"IMAGE"


def test_timeout_and_transport_errors() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return ok(request)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    fetcher = ImageFetcher(settings(fetch_timeout_s=0.1), resolver=fake_resolve,
                           transport=httpx.MockTransport(slow))
    with pytest.raises(ImageError, match=re.escape("longer than 0.1s")):
        asyncio.run(fetcher.fetch("http://img.example.com/a.png"))
    with pytest.raises(ImageError, match="ConnectError"):
        fetch("http://img.example.com/a.png", broken)


def test_system_resolver_prefers_ipv4() -> None:
    addresses = asyncio.run(resolve("localhost", 80))
    assert addresses and addresses[0] == "127.0.0.1"
