"""`modelserve ps`'s table: sizes, keep-alive and KV use in words people read."""

from __future__ import annotations

from typing import Any

import pytest

from modelserve.cli.chat_repl import read_message
from modelserve.cli.ps_table import COLUMNS, human_bytes, human_duration, keep_alive_text, table
from modelserve.cli.remote import error_message


@pytest.mark.parametrize(("count", "text"), [
    (None, "-"), (0, "-"), (512, "512 B"), (1536, "1.5 KiB"), (300 * 1024 ** 2, "300 MiB"),
    (int(2.25 * 1024 ** 3), "2.2 GiB")])
def test_human_bytes(count: int | None, text: str) -> None:
    assert human_bytes(count) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "less than a second"), (1, "1 second"), (59.9, "59 seconds"), (60, "1 minute"),
    (299.5, "4 minutes"), (300, "5 minutes"), (7200, "2 hours"), (90000, "1 day")])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_keep_alive_text() -> None:
    assert keep_alive_text({"state": "ready", "keep_alive_seconds_left": 245.0}) == "4 minutes"
    assert keep_alive_text({"state": "ready", "keep_alive_seconds_left": None}) == "forever"
    assert keep_alive_text({"state": "unloaded", "keep_alive_seconds_left": None}) == "-"


def test_table_aligns_columns() -> None:
    entries: list[dict[str, Any]] = [
        {"name": "smollm2", "kind": "chat", "state": "ready", "memory_bytes": 150 * 1024 ** 2,
         "in_flight": 2, "kv_used_tokens": 256, "kv_capacity_tokens": 1024,
         "keep_alive_seconds_left": 299.0},
        {"name": "minilm-l6", "kind": "embeddings", "state": "ready", "pinned": True,
         "memory_bytes": 90 * 1024 ** 2, "in_flight": 0, "kv_used_tokens": None,
         "keep_alive_seconds_left": None},
        {"name": "spare", "kind": "chat", "state": "unloaded", "memory_bytes": 0,
         "in_flight": 0}]
    lines = table(entries).splitlines()
    assert lines[0].split() == ["NAME", "KIND", "STATE", "MEMORY", "IN", "FLIGHT", "KV", "USE",
                                "KEEP-ALIVE", "LEFT"]
    assert lines[1].split() == ["smollm2", "chat", "ready", "150", "MiB", "2", "256/1024",
                                "(25%)", "4", "minutes"]
    assert lines[2].split() == ["minilm-l6", "embeddings", "ready", "90", "MiB", "0", "-",
                                "forever"]
    assert lines[3].split() == ["spare", "chat", "unloaded", "-", "0", "-", "-"]
    # every column starts at the same place on every line
    for start in (lines[0].index(column) for column in COLUMNS):
        for line in lines[1:]:
            assert line[start] != " " and line[start - 1:start] in ("", " ")


def test_error_message_is_one_line() -> None:
    assert error_message(404, {"error": {"message": "The model 'x'\n does not exist."}}) \
        == "The model 'x' does not exist."
    assert error_message(404, {"error": "model 'x' not found"}) == "model 'x' not found"
    assert error_message(502, None) == "the server answered HTTP 502"


def test_read_message_joins_triple_quoted_lines() -> None:
    typed = iter(['"""first line', "second line", 'third"""'])
    assert read_message(lambda prompt: next(typed)) == "first line\nsecond line\nthird"
    typed = iter(['"""all on one"""'])
    assert read_message(lambda prompt: next(typed)) == "all on one"
    typed = iter(["  plain  "])
    assert read_message(lambda prompt: next(typed)) == "plain"
