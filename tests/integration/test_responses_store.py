"""`/v1/responses` on servers of their own: stored responses under a short TTL and shared by
two replicas through one Redis, and a worker killed mid-stream (the main tests:
test_responses.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import SMOLLM2, serve
from tests.helpers import admin_models, wait_state

TEXT = "smol"


def test_an_expired_response_is_gone(tmp_path: Path) -> None:
    with serve(tmp_path, {"server": {"responses": {"ttl_seconds": 1}},
                          "models": [{"name": TEXT, "source": SMOLLM2,
                                      "options": {"context_size": 256, "parallel": 1}}]}) \
            as server:
        client = server.openai()  # no keys here: every response has the one owner
        made = client.responses.create(model=TEXT, input="Hi", max_output_tokens=2)
        assert client.responses.retrieve(made.id).id == made.id
        time.sleep(1.5)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=TEXT, input="Hi", previous_response_id=made.id)
        assert refused.value.code == "previous_response_not_found"


def test_replicas_share_stored_responses_through_redis(tmp_path: Path, redis_url: str) -> None:
    import redis

    config = {"server": {"cache": {"enabled": True, "url": redis_url},
                         "responses": {"ttl_seconds": 60}},
              "models": [{"name": TEXT, "source": SMOLLM2,
                          "options": {"context_size": 256, "parallel": 1}}]}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with serve(tmp_path / "one", config) as one, serve(tmp_path / "two", config) as two:
        first, second = one.openai(), two.openai()
        made = first.responses.create(model=TEXT, input="Hi", max_output_tokens=2)
        assert second.responses.retrieve(made.id).output_text == made.output_text
        ttl = redis.Redis.from_url(redis_url).pttl(f"modelserve:responses:{made.id}")
        assert 0 < int(ttl) <= 60_000  # type: ignore[arg-type]
        follow = second.responses.create(model=TEXT, input="Again", max_output_tokens=2,
                                         previous_response_id=made.id)
        items = first.responses.input_items.list(follow.id, order="asc")
        assert [item.type for item in items.data] == ["message", "message", "message"]
        second.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            first.responses.retrieve(made.id)


def test_a_worker_dying_mid_stream_is_response_failed(tmp_path: Path) -> None:
    with serve(tmp_path, {"models": [{"name": TEXT, "source": SMOLLM2,
                                      "options": {"context_size": 512, "parallel": 1}}]}) \
            as server, httpx.Client(base_url=server.url, timeout=120) as http:
        pid = admin_models(http)[TEXT]["pid"]
        events: list[dict[str, Any]] = []
        # Held to over 400 tokens of letters: long enough to be killed midway.
        body = {"model": TEXT, "input": "Write.", "stream": True, "max_output_tokens": 400,
                "grammar": "root ::= [a-z ]{1200,1600}"}
        with http.stream("POST", "/v1/responses", json=body) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 6:
                        os.kill(pid, signal.SIGKILL)
        wait_state(http, TEXT, "ready", check=lambda m: m["pid"] != pid)
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "model_unavailable"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
