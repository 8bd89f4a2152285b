"""Stored responses of `/v1/responses` on servers of their own: a short TTL, and two
replicas sharing one Redis (the main tests: test_responses.py)."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.conftest import SMOLLM2, serve

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
