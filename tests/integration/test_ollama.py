"""Ollama's native API through the official `ollama` client, against real models: SmolLM2
for text, Qwen2.5-Coder for tools, MiniLM (ONNX) for embeddings."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from pydantic import BaseModel, Field

from tests.conftest import SMOLLM2, LiveServer, serve
from tests.fixtures.images import image_bytes
from tests.fixtures.tiny_mmproj import TinyMmproj, write_tiny_mmproj
from tests.helpers import assert_ollama_error

TEXT, VISION, TOOLS_MODEL, EMBED, SPARE = "smol", "vision", "qwen", "minilm", "spare"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
HI = [{"role": "user", "content": "Say hello."}]
GREEDY = {"temperature": 0, "num_predict": 12}
PNG_BYTES = image_bytes("PNG", seed=1)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path,
         minilm_onnx: dict[str, Path]) -> Iterator[LiveServer]:
    mmproj = write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "tiny-mmproj.gguf")
    cache = {"cache": {"enabled": True}}  # greedy answers are cached (and replayed)
    with serve(tmp_path_factory.mktemp("ollama"), {"server": cache, "models": [
        {"name": TEXT, "source": SMOLLM2, "options": {"context_size": 1024, "parallel": 2}},
        {"name": VISION, "source": SMOLLM2, "options": {
            "context_size": 512, "parallel": 1, "batch_size": 64, "mmproj": str(mmproj)}},
        {"name": TOOLS_MODEL, "source": str(qwen_gguf),
         "options": {"context_size": 2048, "parallel": 1, "batch_size": 256}},
        {"name": EMBED, "kind": "embeddings", "runtime": "onnx",
         "source": str(minilm_onnx["fp32"])},
        # Loaded and unloaded by the keep-alive test, its worker killed by the last test.
        {"name": SPARE, "source": SMOLLM2, "preload": False,
         "options": {"context_size": 512, "parallel": 1}},
    ]}) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> ollama.Client:
    return ollama.Client(host=live.url, timeout=120)


# -- chat and generate -----------------------------------------------------------------------


def test_chat_answers_whole(client: ollama.Client) -> None:
    resp = client.chat(model=TEXT, messages=[{"role": "system", "content": "You are terse."},
                                             *HI], stream=False, options=GREEDY)
    assert resp.model == TEXT and resp.done and resp.done_reason in ("stop", "length")
    assert resp.message.role == "assistant" and resp.message.content
    assert resp.prompt_eval_count and resp.prompt_eval_count > 5
    assert resp.eval_count and 0 < resp.eval_count <= 12
    assert resp.total_duration and resp.eval_duration and resp.created_at


def test_chat_streams_ndjson(client: ollama.Client) -> None:
    parts = list(client.chat(model=f"{TEXT}:latest", messages=HI, stream=True,
                             options={"num_predict": 16}))
    *pieces, last = parts
    assert pieces and not any(p.done for p in pieces) and last.done
    assert "".join(p.message.content or "" for p in pieces)
    assert last.done_reason in ("stop", "length") and last.eval_count
    assert last.model == f"{TEXT}:latest"  # the name as the client gave it


def test_a_cached_answer_replays_in_ollamas_shape(live: LiveServer) -> None:
    body = {"model": TEXT, "messages": [{"role": "user", "content": "Name a fruit."}],
            "options": GREEDY, "stream": False}
    first = httpx.post(f"{live.url}/api/chat", json=body, timeout=60)
    again = httpx.post(f"{live.url}/api/chat", json={**body, "model": f"{TEXT}:latest"},
                       timeout=60)
    assert first.headers["x-modelserve-cache"] == "miss"
    assert again.headers["x-modelserve-cache"] == "hit"  # the same model, by its tagged name
    assert again.json()["message"] == first.json()["message"]
    assert again.json()["model"] == f"{TEXT}:latest"
    with httpx.stream("POST", f"{live.url}/api/chat", json={**body, "stream": True},
                      timeout=60) as resp:
        assert resp.headers["x-modelserve-cache"] == "hit"
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == \
        first.json()["message"]["content"]
    assert lines[-1]["done"] and lines[-1]["eval_count"] == first.json()["eval_count"]
    # Another surface's cached answer for the same question is not this one's.
    generated = httpx.post(f"{live.url}/api/generate", json={
        "model": TEXT, "prompt": "Name a fruit.", "options": GREEDY, "stream": False})
    assert generated.headers["x-modelserve-cache"] == "miss" and generated.json()["response"]


def test_the_raw_stream_is_ndjson(live: LiveServer) -> None:
    body = {"model": TEXT, "messages": HI, "options": {"num_predict": 4}}  # stream: default
    with httpx.stream("POST", f"{live.url}/api/chat", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert all(set(line) >= {"model", "created_at", "message", "done"} for line in lines)
    assert lines[-1]["done"] is True and lines[-1]["message"]["content"] == ""
    assert {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
            "eval_count", "eval_duration"} <= set(lines[-1])


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {"model": TEXT, "messages": HI, "stream": False, "options": {"num_predict": 4}}),
    ("/api/embed", {"model": EMBED, "input": "hello"}),
])
def test_a_body_is_json_whatever_its_content_type(live: LiveServer, path: str,
                                                   body: dict[str, Any]) -> None:
    """As Ollama reads it: its docs' `curl URL -d '{...}'` sends a form content type."""
    resp = httpx.post(f"{live.url}{path}", content=json.dumps(body), timeout=60,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text


def test_logprobs_whole_and_streamed(client: ollama.Client) -> None:
    whole = client.chat(model=TEXT, messages=HI, options=GREEDY, logprobs=True, top_logprobs=2)
    entries = whole.logprobs or []
    assert len(entries) == whole.eval_count
    assert all(e.logprob <= 0 and len(e.top_logprobs or []) == 2 for e in entries)
    assert "".join(e.token for e in entries) == whole.message.content
    parts = list(client.generate(model=TEXT, prompt="Say hi.", options=GREEDY, stream=True,
                                 logprobs=True))
    assert sum(len(p.logprobs or []) for p in parts) == parts[-1].eval_count


def test_images_are_bare_base64(client: ollama.Client) -> None:
    ask = {"role": "user", "content": "What is in this picture?"}
    plain = client.chat(model=VISION, messages=[ask], options=GREEDY)
    seen = client.chat(model=VISION, messages=[{**ask, "images": [PNG_BYTES]}], options=GREEDY)
    assert seen.message.content and seen.prompt_eval_count and plain.prompt_eval_count
    assert seen.prompt_eval_count >= plain.prompt_eval_count + TinyMmproj().image_tokens
    jpeg = client.generate(model=VISION, prompt="Describe it.", options=GREEDY,
                           images=[image_bytes("JPEG", seed=2)])
    assert jpeg.response and jpeg.prompt_eval_count
    assert jpeg.prompt_eval_count > TinyMmproj().image_tokens
    assert "vision" in (client.show(VISION).capabilities or [])


class City(BaseModel):
    name: str = Field(max_length=24)
    capital: bool


def test_format_follows_a_json_schema(client: ollama.Client) -> None:
    resp = client.chat(model=TEXT, format=City.model_json_schema(), options={
        "temperature": 0, "num_predict": 60},
        messages=[{"role": "user", "content": "Describe Paris as JSON."}])
    city = City.model_validate_json(resp.message.content or "")
    assert city.name


def test_tools_come_back_as_calls_with_object_arguments(client: ollama.Client) -> None:
    resp = client.chat(model=TOOLS_MODEL, tools=[WEATHER], options={"temperature": 0},
                       messages=[{"role": "user", "content": "What's the weather in Paris?"}])
    calls = resp.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert isinstance(calls[0].function.arguments, dict)
    assert "paris" in str(calls[0].function.arguments.get("city", "")).lower()
    # The call and its result sent back, Ollama's way (the result names the tool).
    follow = client.chat(model=TOOLS_MODEL, tools=[WEATHER], options=GREEDY, messages=[
        {"role": "user", "content": "What's the weather in Paris?"}, resp.message,
        {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 24 C"}])
    assert follow.message.content and not follow.message.tool_calls


def test_generate_plain_and_raw(client: ollama.Client) -> None:
    plain = client.generate(model=TEXT, prompt="Name a colour.", system="You are terse.",
                            options=GREEDY)
    assert plain.response and plain.done and plain.eval_count
    raw = client.generate(model=TEXT, raw=True, options=GREEDY,
                          prompt="<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert raw.response and raw.done
    streamed = list(client.generate(model=TEXT, prompt="Count to three.", stream=True,
                                    options={"num_predict": 8}))
    assert streamed[-1].done and "".join(p.response for p in streamed[:-1])


def test_keep_alive_loads_and_unloads(client: ollama.Client) -> None:
    loaded = client.generate(model=SPARE)  # Ollama's "load the model" idiom
    assert loaded.done and loaded.done_reason == "load"
    assert loaded.load_duration and loaded.load_duration > 0  # it loaded for this request
    assert SPARE + ":latest" in [m.model for m in client.ps().models]
    gone = client.generate(model=SPARE, keep_alive=0)
    assert gone.done_reason == "unload"
    deadline = time.monotonic() + 30
    while SPARE + ":latest" in [m.model for m in client.ps().models]:
        assert time.monotonic() < deadline, "keep_alive 0 did not unload the model"
        time.sleep(0.2)


# -- embeddings ------------------------------------------------------------------------------


def test_embed_one_and_several(client: ollama.Client) -> None:
    one = client.embed(model=EMBED, input="The cat sat on the mat.")
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 384
    assert one.prompt_eval_count and one.model == EMBED
    several = client.embed(model=EMBED, input=["one", "two", "three"])
    assert [len(v) for v in several.embeddings] == [384] * 3
    legacy = client.embeddings(model=EMBED, prompt="The cat sat on the mat.")
    assert len(legacy.embedding) == 384
    assert legacy.embedding == pytest.approx(one.embeddings[0], abs=1e-5)


# -- models ----------------------------------------------------------------------------------


def test_list_ps_show_version(client: ollama.Client, live: LiveServer) -> None:
    listed = {m.model: m for m in client.list().models}
    assert {f"{TEXT}:latest", f"{TOOLS_MODEL}:latest", f"{EMBED}:latest"} <= set(listed)
    smol = listed[f"{TEXT}:latest"]
    assert smol.size and smol.size > 10**7 and smol.digest and len(smol.digest) == 64
    assert smol.details and smol.details.format == "gguf" and smol.details.family == "llama"
    assert smol.details.quantization_level == "Q4_1"
    running = {m.model: m for m in client.ps().models}
    assert f"{TEXT}:latest" in running and running[f"{TEXT}:latest"].expires_at
    shown = client.show(TOOLS_MODEL)
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] > 0
    assert "tools" in (shown.capabilities or []) and shown.template
    assert client.show(f"{EMBED}:latest").capabilities == ["embedding"]
    assert client.pull(TEXT).status == "success"  # configured: there already
    with pytest.raises(ollama.ResponseError) as unknown:
        client.pull("llama3.2")
    assert unknown.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as deleting:
        client.delete(TEXT)
    assert deleting.value.status_code == 501 and "configuration" in deleting.value.error
    version = httpx.get(f"{live.url}/api/version").json()["version"]
    assert tuple(int(n) for n in version.split(".")) >= (0, 12, 0)
    assert httpx.get(live.url).text == "Ollama is running"
    assert httpx.head(live.url).status_code == 200


# -- errors ----------------------------------------------------------------------------------


def test_errors_come_in_ollamas_shape(client: ollama.Client, live: LiveServer) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nope", messages=HI)
    assert missing.value.status_code == 404
    assert missing.value.error == 'model "nope" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as wrong_kind:
        client.chat(model=EMBED, messages=HI, stream=False)
    assert wrong_kind.value.status_code == 400 and "embeddings" in wrong_kind.value.error
    with pytest.raises(ollama.ResponseError) as no_thinking:  # SmolLM2's template has none
        client.chat(model=TEXT, messages=HI, think=True)
    assert no_thinking.value.status_code == 400
    assert "does not support thinking" in no_thinking.value.error
    with pytest.raises(ollama.ResponseError) as blind:
        client.generate(model=TEXT, prompt="What is this?", images=[PNG_BYTES])
    assert blind.value.status_code == 400 and "images" in blind.value.error
    url = f"{live.url}/api/chat"
    bad = {"model": TEXT, "messages": HI, "stream": False}
    assert_ollama_error(httpx.post(url, json={**bad, "options": {"temperature": "hot"}}),
                        400, "options.temperature")
    assert_ollama_error(httpx.post(url, json={**bad, "options": {"mirostat": 2}}),
                        400, "options.mirostat")
    assert_ollama_error(httpx.post(url, json={**bad, "messages": [{"role": "robot"}]}),
                        400, "messages[0].role")
    assert_ollama_error(httpx.post(f"{live.url}/api/generate", json={
        "model": TEXT, "prompt": "x", "suffix": "y"}), 400, "suffix")
    assert_ollama_error(httpx.post(f"{live.url}/api/embed", json={"model": EMBED}),
                        400, "input")
    assert_ollama_error(httpx.post(url, json={**bad, "format": {"type": "nonsense"}}),
                        400, "format")
    assert_ollama_error(httpx.post(url, json={**bad, "keep_alive": "forever"}),
                        400, "keep_alive")
    assert_ollama_error(httpx.post(url, json={**bad, "top_logprobs": 3}), 400, "top_logprobs")
    assert_ollama_error(httpx.post(f"{live.url}/api/show", json={}), 400, "model")


def test_a_bad_request_does_not_disturb_a_stream(live: LiveServer) -> None:
    body = {"model": TEXT, "messages": HI, "options": {"num_predict": 40, "temperature": 0}}
    with httpx.stream("POST", f"{live.url}/api/chat", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        first = json.loads(next(lines))
        assert first["done"] is False
        assert_ollama_error(httpx.post(f"{live.url}/api/chat", json={
            **body, "options": {"num_predict": "many"}}), 400, "options.num_predict")
        rest = [json.loads(line) for line in lines if line]
    assert rest[-1]["done"] is True and "error" not in rest[-1]
    assert rest[-1]["eval_count"] >= len(rest)  # each piece holds a token or more


def test_a_worker_dying_mid_stream_ends_it_with_an_error_line(live: LiveServer) -> None:
    body = {"model": SPARE, "options": {"temperature": 0, "num_predict": -1},
            "messages": [{"role": "user", "content": "Count from 1 to 500, one per line."}]}
    with httpx.stream("POST", f"{live.url}/api/chat", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        assert json.loads(next(lines))["done"] is False
        models = httpx.get(f"{live.url}/admin/models").json()["data"]
        os.kill(next(m["pid"] for m in models if m["name"] == SPARE), signal.SIGKILL)
        rest = [json.loads(line) for line in lines if line]
    assert set(rest[-1]) == {"error"} and "not available" in rest[-1]["error"], rest[-1]
    assert not any(line.get("done") for line in rest)
