"""The load generators' HTTP clients against a server that closes every kept-alive connection
after its answer without saying so (llama-server does, after each stream): no request fails."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from modelserve.loadgen.chat import AiohttpClient, open_client
from tests.helpers import QuietHandler, http_host


class _ClosesSilently(QuietHandler):
    protocol_version = "HTTP/1.1"  # keep-alive by default, and no `Connection: close` sent

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(200, {"Content-Type": "application/json"}, b'{"data": [1]}')
        self.close_connection = True


async def _posts(client: AiohttpClient, url: str, count: int) -> list[int]:
    return [(await client.post_json(url, {"n": n}))[0] for n in range(count)]


def test_aiohttp_reconnects_when_a_kept_alive_connection_died() -> None:
    async def run(port: int) -> list[int]:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            return await _posts(AiohttpClient(session), f"http://127.0.0.1:{port}/", 20)

    with http_host(_ClosesSilently) as port:
        assert asyncio.run(run(port)) == [200] * 20


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_both_clients_post_json(kind: str) -> None:
    async def run(port: int) -> tuple[int, bytes]:
        async with open_client(kind, 1, {}) as client:
            return await client.post_json(f"http://127.0.0.1:{port}/", {"n": 1})

    with http_host(_ClosesSilently) as port:
        assert asyncio.run(run(port)) == (200, b'{"data": [1]}')
