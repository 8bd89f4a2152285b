"""The prompt store's spill folder, through HTTP with SmolLM2 in `modelserve serve` processes:
a conversation's KV outlives a restart, and never reaches another model file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SMOLLM2, server_process

RULES = " ".join(f"Rule {i}: the key of room {i} hangs on hook {i * 3}." for i in range(60))


def _ask(url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    resp = httpx.post(f"{url}/v1/chat/completions", timeout=300, json={
        "model": "smol", "messages": messages, "max_tokens": 16, "temperature": 0})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _smollm2_file() -> Path:
    spec = importlib.util.find_spec(SMOLLM2["package"])
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2["file"]


def test_a_conversation_survives_a_restart_and_never_reaches_another_file(
        tmp_path: Path) -> None:
    for run in ("first", "second", "third"):
        (tmp_path / run).mkdir()
    spill = tmp_path / "kv"
    options = {"context_size": 2048, "parallel": 2, "host_cache_mb": 256,
               "host_cache_dir": str(spill)}
    config = {"models": [{"name": "smol", "source": SMOLLM2, "options": options}]}
    history: list[dict[str, Any]] = [{"role": "system", "content": RULES},
                                     {"role": "user", "content": "Where is the key of room 4?"}]
    with server_process(tmp_path / "first", config) as server:
        first = _ask(server.url, history)
    # the server stopped (SIGTERM): its slots went to the folder on the way out
    assert list(spill.glob("*/*.kv"))
    history += [first["choices"][0]["message"], {"role": "user", "content": "And room 7?"}]
    with server_process(tmp_path / "second", config) as server:
        again = _ask(server.url, history)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= \
        first["usage"]["prompt_tokens"] - 1

    # The same weights but one byte: another file, whose folder is its own.
    other = tmp_path / "other.gguf"
    data = bytearray(_smollm2_file().read_bytes())
    data[-1] ^= 1
    other.write_bytes(bytes(data))
    elsewhere = {"models": [{"name": "smol", "source": {"path": str(other)},
                             "options": options}]}
    with server_process(tmp_path / "third", elsewhere) as server:
        third = _ask(server.url, history)
    assert third["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert len([p for p in spill.iterdir() if p.is_dir()]) == 2
