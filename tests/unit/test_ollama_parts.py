"""The Ollama surface's pure parts: options as sampling, keep_alive durations, images' types,
tool results paired with calls, thinking as template variables, GGUF headers, error bodies."""

from __future__ import annotations

import base64

import pytest

from modelserve import gguf_metadata as gguf
from modelserve.api.errors import APIError, bad_request
from modelserve.api.ollama import errors
from modelserve.api.ollama.chat import _link_results, _media_type, _thinking
from modelserve.api.ollama.options import keep_alive_seconds, sampling
from modelserve.chat.turn import Message, ToolCall
from modelserve.sources import PackageSource
from tests.conftest import SMOLLM2


def test_options_become_sampling_with_ollamas_defaults() -> None:
    default = sampling(None)
    assert (default.temperature, default.top_k, default.top_p) == (0.8, 40, 0.9)
    assert default.max_tokens is None and default.repeat_penalty == 1.0
    given = sampling({"num_predict": 7, "temperature": 0, "stop": "END", "seed": 3,
                      "min_p": 0.1, "num_ctx": 4096, "num_thread": 2, "mirostat": 0,
                      "typical_p": None})
    assert (given.max_tokens, given.temperature, given.stop, given.seed, given.min_p) == \
        (7, 0.0, ("END",), 3, 0.1)
    assert sampling({"num_predict": -1}).max_tokens is None
    assert sampling({"num_predict": -2}).max_tokens is None


@pytest.mark.parametrize(("options", "named"), [
    ({"bogus": 1}, "options.bogus"), ({"mirostat": 2}, "options.mirostat"),
    ({"temperature": "hot"}, "options.temperature"), ({"temperature": 3}, "options.temperature"),
    ({"num_predict": 0}, "options.num_predict"), ({"top_k": 1.5}, "options.top_k"),
    ({"stop": [""]}, "options.stop"), ({"seed": True}, "options.seed")])
def test_options_we_cannot_honour_are_refused_by_name(options: dict[str, object],
                                                      named: str) -> None:
    with pytest.raises(APIError) as err:
        sampling(options)
    assert err.value.status == 400 and err.value.param == named


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (0, 0.0), (300, 300.0), ("300", 300.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("1.5h", 5400.0), ("-1", -1.0), ("-1m", -60.0), ("250ms", 0.25)])
def test_keep_alive_durations(value: float | str | None, seconds: float | None) -> None:
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["forever", "5 minutes", "m", "5x"])
def test_keep_alive_nonsense_is_refused(value: str) -> None:
    with pytest.raises(APIError) as err:
        keep_alive_seconds(value)
    assert err.value.param == "keep_alive"


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff\xe0", "image/jpeg"),
    (b"GIF89a", "image/gif"), (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
    (b"BM\0\0", "image/bmp"), (b"what is this", "image/png")])
def test_an_images_type_is_sniffed(head: bytes, kind: str) -> None:
    assert _media_type(base64.b64encode(head + b"\0" * 32).decode()) == kind


def test_tool_results_take_the_ids_of_their_calls() -> None:
    messages = [Message("assistant", "", "m0", tool_calls=[ToolCall("a", "weather", "{}"),
                                                           ToolCall("b", "time", "{}")]),
                Message("tool", "12:00", "m1", name="time"),
                Message("tool", "sunny", "m2"), Message("tool", "late", "m3")]
    _link_results(messages)
    assert [(m.tool_call_id, m.name) for m in messages[1:]] == [
        ("b", "time"), ("a", "weather"), ("call_m3", None)]


def test_think_becomes_template_variables() -> None:
    assert _thinking(None) == {}
    assert _thinking(False) == {"enable_thinking": False}
    assert _thinking("high") == {"enable_thinking": True, "reasoning_effort": "high"}


def test_gguf_metadata_is_read_by_a_vocabulary_only_load() -> None:
    meta = gguf.metadata(PackageSource(**SMOLLM2).resolve())
    assert meta["general.architecture"] == "llama" and meta["llama.context_length"] > 0
    assert gguf.quantization(meta) == "Q4_1" and gguf.parameter_size(meta) == "135M"
    assert "tokenizer.ggml.tokens" not in meta  # arrays are skipped


def test_errors_are_one_message_naming_the_field() -> None:
    assert errors.body(bad_request("must be a number.", param="options.top_k")) == \
        {"error": "options.top_k: must be a number."}
    assert errors.stream_error(errors.not_found("x")) == \
        '{"error":"model \\"x\\" not found, try pulling it first"}\n'
