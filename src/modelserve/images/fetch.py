"""Fetch a remote image over http(s) under the address policy, with size and time limits.

DNS is resolved here, the addresses checked, and the connection made to a checked address
(the Host header and TLS name stay the original host's), so a name cannot pass the check and
then resolve elsewhere (DNS rebinding). Redirects are followed by hand, each hop checked anew.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx

from modelserve.config import ImageSettings
from modelserve.images.address_policy import check_addresses, check_host
from modelserve.images.errors import ImageError

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host` (for TCP), through the system resolver, IPv4 first (the one
    connected to is the first; IPv6 is less often reachable)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ImageFetcher:
    def __init__(self, settings: ImageSettings, resolver: Resolver = resolve,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._resolve = resolver
        self._transport = transport

    async def fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.settings.fetch_timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise ImageError(f"fetching the image took longer than "
                             f"{self.settings.fetch_timeout_s:g}s", code="image_fetch_failed") \
                from None
        except httpx.HTTPError as exc:
            raise ImageError(f"could not fetch the image: {type(exc).__name__}",
                             code="image_fetch_failed") from None

    async def _fetch(self, url: str) -> bytes:
        async with httpx.AsyncClient(transport=self._transport, trust_env=False,
                                     follow_redirects=False) as client:
            target = self._parse(url)
            for _ in range(self.settings.max_redirects + 1):
                request = await self._pinned_request(client, target)
                response = await client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        target = self._parse(str(target.join(location)))
                        continue
                    if response.status_code != 200:
                        raise ImageError(f"the image URL answered HTTP {response.status_code}",
                                         code="image_fetch_failed")
                    return await self._read_limited(response)
                finally:
                    await response.aclose()
        raise ImageError(f"the image URL redirected more than {self.settings.max_redirects} "
                         "times", code="image_fetch_failed")

    def _parse(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ImageError("malformed image URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ImageError("image URLs must be http(s) or data: URLs")
        check_host(parsed.host, self.settings.allowed_hosts)
        return parsed

    async def _pinned_request(self, client: httpx.AsyncClient, url: httpx.URL) -> httpx.Request:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = await self._resolve(url.host, port)
        except OSError:
            addresses = []
        check_addresses(url.host, addresses, self.settings.trusted_private_hosts)
        host_header = url.netloc.decode("ascii")
        return client.build_request(
            "GET", url.copy_with(host=addresses[0]),
            headers={"Host": host_header, "Accept": "image/*"},
            extensions={"sni_hostname": url.host})

    async def _read_limited(self, response: httpx.Response) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ImageError(f"image is larger than the limit of {limit} bytes",
                             code="image_too_large")
        data = bytearray()
        async for piece in response.aiter_bytes():
            data += piece
            if len(data) > limit:
                raise ImageError(f"image is larger than the limit of {limit} bytes",
                                 code="image_too_large")
        return bytes(data)
