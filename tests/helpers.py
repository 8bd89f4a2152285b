"""Helpers shared by test modules (fixtures live in conftest.py): OpenAI error checks,
/metrics readers, chat content parts, a local HTTP host for remote-image tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.images import data_url, image_bytes

# logit_bias that bans SmolLM2's end-of-generation tokens: answers run to max_tokens.
NO_EOS = {"0": -100, "1": -100, "2": -100}
PNG = data_url(image_bytes("PNG", seed=1))
MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def assert_openai_error(resp: httpx.Response, status: int, param: str | None = None,
                        code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


def metric(http: httpx.Client, name: str, model: str) -> float:
    scrape = http.get("/metrics")
    assert scrape.status_code == 200, scrape.text
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == model:
                return float(sample.value)
    raise AssertionError(f"{name} not found")


def samples(http: httpx.Client, path: str = "/admin/metrics") -> MetricSamples:
    out = {}
    for family in text_string_to_metric_families(http.get(path).text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(data: MetricSamples, name: str, **labels: str) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


class QuietHandler(BaseHTTPRequestHandler):
    """A test HTTP handler: `reply` writes one whole response; nothing is logged."""

    def reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_host(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A local HTTP server on 127.0.0.1 answering with `handler`; yields its port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
