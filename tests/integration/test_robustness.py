"""Bad input, overload and disconnects: clear 4xx in OpenAI's shape, nothing else lost."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL, SMOLLM2, TINY_QUEUE_MODEL, serve
from tests.helpers import NO_EOS, assert_openai_error, metric

USER = [{"role": "user", "content": "Hi"}]
BAD_CHAT_BODIES = [
    ({"model": CHAT_MODEL, "messages": []}, "messages"),
    ({"model": CHAT_MODEL, "messages": "hi"}, "messages"),
    ({"model": CHAT_MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": CHAT_MODEL, "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user"}]}, "messages[0]"),
    ({"model": CHAT_MODEL, "messages": USER, "n": 0}, "n"),
    ({"model": CHAT_MODEL, "messages": USER, "max_tokens": -1}, "max_tokens"),
    ({"model": CHAT_MODEL, "messages": USER, "max_tokens": "ten"}, "max_tokens"),
    ({"model": CHAT_MODEL, "messages": USER, "temperature": 5}, "temperature"),
    ({"model": CHAT_MODEL, "messages": USER, "top_p": 0}, "top_p"),
    ({"model": CHAT_MODEL, "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": CHAT_MODEL, "messages": USER, "stop": [""]}, "stop"),
    ({"model": CHAT_MODEL, "messages": USER, "logit_bias": {"x": 1}}, "logit_bias"),
    ({"model": CHAT_MODEL, "messages": USER, "logit_bias": {"5": 500}}, "logit_bias"),
    ({"model": CHAT_MODEL, "messages": USER, "logit_bias": {"999999999": 1}}, "logit_bias"),
    ({"model": CHAT_MODEL, "messages": USER, "top_logprobs": 3}, None),
    ({"model": CHAT_MODEL, "messages": USER, "logprobs": True, "top_logprobs": 50},
     "top_logprobs"),
    ({"model": CHAT_MODEL, "messages": USER, "stream_options": {"include_usage": True}}, None),
    ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "messages[0].content"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
     "messages[0].content"),
    ({"messages": USER}, "model"),
    ([1, 2, 3], None),
]


@pytest.mark.parametrize(("body", "param"), BAD_CHAT_BODIES)
def test_bad_chat_bodies_are_400(http: httpx.Client, body: Any, param: str | None) -> None:
    err = assert_openai_error(http.post("/v1/chat/completions", json=body), 400)
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] is not None and err["param"].startswith(param), err


def test_malformed_json_is_400(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [',
                     headers={"content-type": "application/json"})
    assert "JSON" in assert_openai_error(resp, 400)["message"]
    resp = http.post("/v1/chat/completions", content=b"", headers={"content-type":
                                                                   "application/json"})
    assert_openai_error(resp, 400)


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
NOT_YET = [  # tools are served (test_tools.py); their deprecated form is not
    ("/v1/chat/completions", {"functions": [TOOL["function"]]}, "functions"),
    ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities"),
    ("/v1/chat/completions", {"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
]  # Predicted Outputs are served (test_chat_extras.py)


@pytest.mark.parametrize(("route", "extra", "param"), NOT_YET)
def test_fields_we_cannot_honour_are_refused_by_name(http: httpx.Client, route: str,
                                                     extra: dict[str, Any], param: str) -> None:
    """Never free text with a 200 for a client that asked for audio (reasoning is served:
    test_reasoning.py)."""
    base = {"model": CHAT_MODEL, "max_tokens": 4}
    base |= {"messages": USER} if route == "/v1/chat/completions" else {"prompt": "Hi"}
    err = assert_openai_error(http.post(route, json=base | extra), 400, param=param)
    assert "not supported" in err["message"] or "only text" in err["message"]


def test_values_that_ask_for_nothing_pass(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=CHAT_MODEL, messages=USER, max_tokens=4, tools=[], tool_choice="none",
        response_format={"type": "text"}, parallel_tool_calls=False, modalities=["text"])
    assert answer.choices[0].message.content is not None


def test_unknown_model_is_404(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": USER})
    assert_openai_error(resp, 404, param="model", code="model_not_found")
    resp = http.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"})
    assert_openai_error(resp, 404, code="model_not_found")


def test_over_long_prompt_gives_token_counts(client: openai.OpenAI) -> None:
    long_text = "word " * 3000
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL,
                                       messages=[{"role": "user", "content": long_text}])
    assert info.value.code == "context_length_exceeded"
    assert "1024" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=USER,  # type: ignore
                                       max_tokens=5000)
    assert info.value.code == "context_length_exceeded"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_n_is_bounded_by_the_default_max_n(http: httpx.Client, path: str) -> None:
    body = {"model": CHAT_MODEL, "messages": USER, "prompt": "Hi", "max_tokens": 1}
    err = assert_openai_error(http.post(path, json={**body, "n": 17}), 400, param="n",
                              code="limit_exceeded")
    assert err["type"] == "invalid_request_error"
    assert "maximum of 16" in err["message"] and "max_n" in err["message"]
    assert len(http.post(path, json={**body, "n": 16}).json()["choices"]) == 16


def test_n_follows_a_configured_max_n_past_16(tmp_path_factory: pytest.TempPathFactory) -> None:
    config = {"server": {"limits": {"max_n": 20}},
              "models": [{"name": "chat", "source": SMOLLM2,
                          "options": {"context_size": 256, "parallel": 4}}]}
    with serve(tmp_path_factory.mktemp("max_n"), config) as live, \
            httpx.Client(base_url=live.url, timeout=120) as http:
        body = {"model": "chat", "prompt": "Hi", "max_tokens": 1}
        ok = http.post("/v1/completions", json={**body, "n": 20})
        assert ok.status_code == 200 and len(ok.json()["choices"]) == 20
        err = assert_openai_error(http.post("/v1/completions", json={**body, "n": 21}), 400,
                                  param="n", code="limit_exceeded")
        assert "maximum of 20" in err["message"]


def test_bad_completion_inputs(http: httpx.Client) -> None:
    for body, param in [
        ({"model": CHAT_MODEL, "prompt": []}, "prompt"),
        ({"model": CHAT_MODEL, "prompt": ""}, "prompt"),
        ({"model": CHAT_MODEL, "prompt": [[]]}, "prompt"),
        ({"model": CHAT_MODEL, "prompt": [5, -3]}, "prompt"),
        ({"model": CHAT_MODEL, "prompt": [[1], [10**9]]}, "prompt[1]"),
        ({"model": CHAT_MODEL, "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": CHAT_MODEL, "prompt": "x", "echo": True, "logprobs": 1}, "echo"),
        ({"model": CHAT_MODEL, "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": CHAT_MODEL, "prompt": {"a": 1}}, "prompt"),
    ]:
        err = assert_openai_error(http.post("/v1/completions", json=body), 400)
        assert err["param"] is not None and err["param"].startswith(param), (body, err)


def test_oversize_body_is_413(http: httpx.Client) -> None:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x" * 300_000}]}
    assert_openai_error(http.post("/v1/chat/completions", json=body), 413,
                        code="request_too_large")


def test_unknown_route_and_method(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/nothing"), 404)
    assert_openai_error(http.get("/v1/chat/completions"), 405)


def test_long_prompt_is_prefilled_in_chunks(client: openai.OpenAI) -> None:
    # ~600 tokens with a 256-token batch: the prompt spans several engine steps.
    text = " ".join(f"item{i}" for i in range(150))
    resp = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=4, temperature=0,
        messages=[{"role": "user", "content": f"{text}\nWhat was the first item?"}])
    assert resp.usage is not None and resp.usage.prompt_tokens > 512


def test_disconnect_mid_stream_frees_the_slot(server: Any, http: httpx.Client) -> None:
    cancelled = metric(http, "modelserve_cancelled_sequences_total", CHAT_MODEL)
    body = {"model": CHAT_MODEL, "messages": USER, "max_tokens": 800, "stream": True,
            "temperature": 0.7, "seed": 1, "logit_bias": NO_EOS}
    with httpx.Client(base_url=server.url, timeout=60) as own, \
            own.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = resp.iter_lines()
        for _ in range(6):
            next(lines)
        assert metric(http, "modelserve_running_sequences", CHAT_MODEL) >= 1
    deadline = time.monotonic() + 10
    while metric(http, "modelserve_running_sequences", CHAT_MODEL) > 0:
        assert time.monotonic() < deadline, "slot not freed after disconnect"
        time.sleep(0.05)
    assert metric(http, "modelserve_cancelled_sequences_total", CHAT_MODEL) == cancelled + 1


def test_disconnect_non_stream_frees_the_slot(server: Any, http: httpx.Client) -> None:
    cancelled = metric(http, "modelserve_cancelled_sequences_total", CHAT_MODEL)
    body = {"model": CHAT_MODEL, "messages": USER, "max_tokens": 800, "temperature": 0.7,
            "seed": 2, "logit_bias": NO_EOS}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=1.0)
    deadline = time.monotonic() + 10
    while metric(http, "modelserve_cancelled_sequences_total", CHAT_MODEL) <= cancelled:
        assert time.monotonic() < deadline, "non-streaming request not cancelled"
        time.sleep(0.05)
    assert metric(http, "modelserve_running_sequences", CHAT_MODEL) == 0


def test_full_queue_is_429_and_others_complete(server: Any, http: httpx.Client) -> None:
    body = {"model": TINY_QUEUE_MODEL, "messages": USER, "max_tokens": 120, "temperature": 0.9,
            "seed": 5, "logit_bias": NO_EOS}
    statuses: list[int] = []

    def send() -> None:
        statuses.append(httpx.post(f"{server.url}/v1/chat/completions", json=body,
                                   timeout=120).status_code)

    workers = [threading.Thread(target=send) for _ in range(2)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 10
    while metric(http, "modelserve_waiting_sequences", TINY_QUEUE_MODEL) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    resp = http.post("/v1/chat/completions", json=body)
    assert_openai_error(resp, 429, code="queue_full")
    assert resp.headers["retry-after"] == "1"
    for w in workers:
        w.join()
    assert statuses == [200, 200]
    ok = http.post("/v1/chat/completions", json={**body, "max_tokens": 2})
    assert ok.status_code == 200
