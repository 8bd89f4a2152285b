"""The request pipeline's order for vision chat: a request refused by a rate limit, or
answered from the cache, costs no image fetch and no encode (the metrics show it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve
from tests.fixtures.images import image_bytes
from tests.fixtures.tiny_mmproj import write_tiny_mmproj
from tests.helpers import (
    PNG,
    QuietHandler,
    assert_openai_error,
    http_host,
    image,
    samples,
    text,
    user,
    value,
)

VISION = "smollm2-vision"
ADMIN, TPM = "sk-admin-pipeline", "sk-tpm-pipeline"
FETCHES: list[str] = []  # paths the image host served


class _Cat(QuietHandler):
    def do_GET(self) -> None:
        FETCHES.append(self.path)
        self.reply(200, {"Content-Type": "image/png"}, image_bytes("PNG", seed=3))


@pytest.fixture(scope="module")
def image_host() -> Iterator[int]:
    with http_host(_Cat) as port:
        yield port


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "tiny-mmproj.gguf")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mmproj: Path) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("pipeline"), {
        "server": {
            "cache": {"enabled": True},
            "images": {"allow_remote": True, "max_bytes": 256 * 1024,
                       "allowed_hosts": ["localhost"], "trusted_private_hosts": ["localhost"]},
            "security": {"api_keys": [
                {"key": ADMIN, "scope": "admin"},
                {"key": TPM, "limits": {"tokens_per_minute": 100}},
            ]},
        },
        "models": [{"name": VISION, "source": SMOLLM2,
                    "options": {"context_size": 512, "parallel": 2, "batch_size": 64,
                                "mmproj": str(mmproj)}}],
    }) as live:
        yield live


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def image_work(http: httpx.Client) -> tuple[float, float]:
    data = samples(http, "/metrics")
    return (value(data, "modelserve_image_inputs_total", model=VISION, stage="fetch"),
            value(data, "modelserve_image_inputs_total", model=VISION, stage="encode"))


def post(http: httpx.Client, key: str, url: str, **extra: Any) -> httpx.Response:
    body = {"model": VISION, "messages": user(text("What is this?"), image(url)),
            "temperature": 0, "max_tokens": 4, **extra}
    return http.post("/v1/chat/completions", json=body,
                     headers={"Authorization": f"Bearer {key}"})


def test_rate_limited_vision_request_fetches_and_encodes_nothing(
        http: httpx.Client, image_host: int) -> None:
    http.headers["Authorization"] = f"Bearer {ADMIN}"
    remote = f"http://localhost:{image_host}/cat.png"
    assert post(http, ADMIN, remote).status_code == 200  # the remote path works here
    before, served = image_work(http), len(FETCHES)
    assert before[0] >= 1 and before[1] >= 1
    # More tokens than the key's whole minute allows: refused on its size, before any image
    # work.
    refused = post(http, TPM, remote, max_tokens=300)
    err = assert_openai_error(refused, 429, code="rate_limit_exceeded")
    assert err["type"] == "tokens"
    assert image_work(http) == before
    assert len(FETCHES) == served


def test_cache_hit_vision_request_encodes_nothing(http: httpx.Client) -> None:
    http.headers["Authorization"] = f"Bearer {ADMIN}"
    first = post(http, ADMIN, PNG, seed=7)
    assert first.status_code == 200 and first.headers["x-modelserve-cache"] == "miss"
    before = image_work(http)
    again = post(http, ADMIN, PNG, seed=7)
    assert again.headers["x-modelserve-cache"] == "hit"
    assert again.content == first.content
    assert image_work(http) == before
