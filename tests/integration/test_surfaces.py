"""Every chat surface over the one core, side by side on one server: OpenAI Chat, OpenAI
Responses, Anthropic Messages and Ollama's /api/chat. Bad input on each is a 4xx in that
surface's own error shape while a stream on every surface runs on undisturbed; each surface
is counted under its own route; a client that hangs up mid-stream ends its sequence on every
surface."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.loadgen.surfaces import SURFACES, Line
from tests.conftest import SMOLLM2, LiveServer, serve
from tests.helpers import metric

MODEL = "smol"
COUNT = "Count from 1 to 300, one number per line."


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("surfaces"), {"models": [
        {"name": MODEL, "source": SMOLLM2, "options": {"context_size": 1024, "parallel": 6}},
    ]}) as server:
        yield server


def stream(url: str, surface: str, max_tokens: int, lines: list[Line],
           started: threading.Event) -> None:
    dialect = SURFACES[surface]
    with httpx.stream("POST", f"{url}{dialect.path}", json=dialect.body(MODEL, COUNT, max_tokens),
                      headers=dialect.headers, timeout=120) as resp:
        assert resp.status_code == 200
        for raw in resp.iter_lines():
            lines.append(dialect.read(raw))
            if sum(line.text for line in lines) >= 3:
                started.set()


# A bad request on each surface, and the error body it must get: (path, body, check).
BAD: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "messages": "hello"}),
    "responses": ("/v1/responses", {"model": MODEL, "input": 5}),
    "messages": ("/v1/messages", {"model": MODEL, "max_tokens": 8}),
    "ollama": ("/api/chat", {"model": MODEL, "messages": "hello"}),
}


def whole(surface: str, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """The surface's benchmark body, not streamed."""
    body = {**SURFACES[surface].body(model, prompt, max_tokens), "stream": False}
    body.pop("stream_options", None)
    return body


def assert_own_shape(surface: str, resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    if surface in ("chat", "responses"):  # OpenAI's envelope
        assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    elif surface == "messages":  # Anthropic's
        assert body["type"] == "error" and body["error"]["message"], body
        assert body["error"]["type"] == ("invalid_request_error" if status == 400
                                         else "not_found_error"), body
    else:  # Ollama's: a string
        assert isinstance(body["error"], str) and body["error"], body


def test_bad_input_is_refused_in_each_shape_while_every_surface_streams(
        live: LiveServer) -> None:
    runs = {surface: ([], threading.Event()) for surface in SURFACES}
    threads = [threading.Thread(target=stream, args=(live.url, s, 160, lines, started))
               for s, (lines, started) in runs.items()]
    for thread in threads:
        thread.start()
    for surface, (_, started) in runs.items():
        assert started.wait(60), f"{surface} never streamed"
    with httpx.Client(base_url=live.url, timeout=30) as http:
        for surface, (path, body) in BAD.items():
            assert_own_shape(surface, http.post(path, json=body), 400)
            unknown = whole(surface, "nope", "Hi", 4)
            assert_own_shape(surface, http.post(SURFACES[surface].path, json=unknown), 404)
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    for surface, (lines, _) in runs.items():
        assert any(line.done for line in lines), surface
        assert not any(line.error for line in lines), surface
        assert sum(line.text for line in lines) > 20, surface


def test_each_surface_is_counted_under_its_own_route(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as http:
        for surface, dialect in SURFACES.items():
            resp = http.post(dialect.path, json=whole(surface, MODEL, "Hi", 4))
            assert resp.status_code == 200, (surface, resp.text)
        routes = {sample.labels["route"]
                  for family in text_string_to_metric_families(http.get("/metrics").text)
                  for sample in family.samples if sample.name == "modelserve_requests_total"
                  and sample.labels["model"] == MODEL and sample.labels["status"] == "200"}
    assert {dialect.path for dialect in SURFACES.values()} <= routes


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_a_hang_up_mid_stream_ends_the_sequence(live: LiveServer, surface: str) -> None:
    dialect = SURFACES[surface]
    with httpx.Client(base_url=live.url, timeout=60) as http:
        cancelled = metric(http, "modelserve_cancelled_sequences_total", MODEL)
        with httpx.stream("POST", f"{live.url}{dialect.path}", headers=dialect.headers,
                          json=dialect.body(MODEL, COUNT, 600), timeout=60) as resp:
            texts = 0
            for raw in resp.iter_lines():
                texts += dialect.read(raw).text
                if texts >= 4:
                    break
        deadline = time.monotonic() + 10
        while metric(http, "modelserve_cancelled_sequences_total", MODEL) <= cancelled or \
                metric(http, "modelserve_running_sequences", MODEL) > 0:
            assert time.monotonic() < deadline, f"{surface}: the sequence ran on"
            time.sleep(0.05)
