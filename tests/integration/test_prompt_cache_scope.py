"""Who reuses whose prompt KV, through HTTP with SmolLM2: with `prompt_cache_scope: per_key`
a prompt's KV serves only requests made with the same API key (its slot, another slot's copy
and the prompt store alike); a client's `cache_salt` (vLLM's field) scopes it on any model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, serve

KEY_A, KEY_B = "scope-tenant-a-0123456789", "scope-tenant-b-0123456789"
RULES = " ".join(f"Rule {i}: the key of room {i} hangs on hook {i * 3}." for i in range(40))
OTHERS = [f"Tell me about the number {n} in {n + 3} words." for n in range(6)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One slot each: every other prompt takes the slot, so what comes back comes from the
    # prompt store, the path a busy server takes.
    options = {"context_size": 1024, "parallel": 1, "host_cache_mb": 64}
    with serve(tmp_path_factory.mktemp("cache-scope"), {
        "server": {"security": {"api_keys": [{"key": KEY_A, "name": "tenant-a"},
                                             {"key": KEY_B, "name": "tenant-b"}]}},
        "models": [
            {"name": "scoped", "source": SMOLLM2,
             "options": {**options, "prompt_cache_scope": "per_key"}},
            {"name": "shared", "source": SMOLLM2, "options": options},
        ]}) as server:
        yield server


def _cached(live: LiveServer, key: str, model: str, question: str,
            **extra: Any) -> int:
    resp = httpx.post(f"{live.url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "max_tokens": 4, "temperature": 0, **extra,
                            "messages": [{"role": "system", "content": RULES},
                                         {"role": "user", "content": question}]})
    assert resp.status_code == 200, resp.text
    cached: int = resp.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    return cached


def _push_out(live: LiveServer, key: str, model: str) -> None:
    """Other conversations take the slot: the rules go to the prompt store."""
    resp = httpx.post(f"{live.url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "max_tokens": 2, "temperature": 0,
                            "messages": [{"role": "user", "content": OTHERS[0]}]})
    assert resp.status_code == 200, resp.text


def test_per_key_scope_keeps_each_tenants_prompts_to_itself(live: LiveServer) -> None:
    assert _cached(live, KEY_A, "scoped", "Where is the key of room 4?") == 0
    # the same tenant's next turn reuses the rules, from its slot and from the store
    assert _cached(live, KEY_A, "scoped", "And room 7?") > 300
    _push_out(live, KEY_A, "scoped")
    assert _cached(live, KEY_A, "scoped", "And room 9?") > 300
    # another tenant with the very same rules computes them itself, slot or store
    assert _cached(live, KEY_B, "scoped", "Where is the key of room 4?") == 0
    _push_out(live, KEY_B, "scoped")
    assert _cached(live, KEY_B, "scoped", "And room 7?") > 300
    assert _cached(live, KEY_A, "scoped", "And room 2?") > 300  # a's entry is still a's


def test_a_shared_model_reuses_across_keys_unless_the_client_salts(live: LiveServer) -> None:
    assert _cached(live, KEY_A, "shared", "Where is the key of room 4?") == 0
    assert _cached(live, KEY_B, "shared", "And room 7?") > 300  # shared: any key reuses it
    salt = "a-long-random-salt-of-the-clients-own"
    assert _cached(live, KEY_B, "shared", "And room 8?", cache_salt=salt) == 0
    _push_out(live, KEY_B, "shared")
    assert _cached(live, KEY_A, "shared", "And room 9?", cache_salt=salt) > 300
    assert _cached(live, KEY_A, "shared", "And room 3?", cache_salt="another") == 0


def test_completions_take_the_salt_too_and_an_empty_one_is_refused(live: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {KEY_A}"}
    body = {"model": "shared", "prompt": RULES, "max_tokens": 2, "temperature": 0}
    with httpx.Client(base_url=live.url, headers=headers, timeout=120) as http:
        first = http.post("/v1/completions", json={**body, "cache_salt": "completions"})
        again = http.post("/v1/completions", json={**body, "cache_salt": "completions"})
        assert first.status_code == again.status_code == 200, first.text
        assert again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 300
        for route, extra in (("/v1/completions", {}),
                             ("/v1/chat/completions",
                              {"messages": [{"role": "user", "content": "hi"}]})):
            refused = http.post(route, json={**body, **extra, "cache_salt": ""})
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] == "cache_salt"


def test_the_scope_option_is_checked_with_the_config() -> None:
    from modelserve.config import ModelSpec

    with pytest.raises(ValueError, match="prompt_cache_scope"):
        ModelSpec.model_validate({"name": "x", "source": SMOLLM2,
                                  "options": {"prompt_cache_scope": "per_user"}})
