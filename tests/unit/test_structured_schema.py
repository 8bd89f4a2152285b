"""Schemas are closed before they constrain output: no invented keys."""

from __future__ import annotations

from modelserve.chat.grammars import closed


def test_objects_that_list_properties_are_closed_unless_they_say_otherwise() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "b": {"type": "object", "properties": {}, "additionalProperties": True},
        "c": {"type": "array", "items": {"type": "object", "properties": {"y": {}}}},
        "d": {"anyOf": [{"type": "object", "properties": {"z": {}}}, {"type": "null"}]},
        "e": {"type": "object"},  # a free-form object stays free
    }}
    out = closed(schema)
    assert out["additionalProperties"] is False
    props = out["properties"]
    assert props["a"]["additionalProperties"] is False
    assert props["b"]["additionalProperties"] is True
    assert props["c"]["items"]["additionalProperties"] is False
    assert props["d"]["anyOf"][0]["additionalProperties"] is False
    assert "additionalProperties" not in props["e"]
    assert "additionalProperties" not in schema  # the request's own schema is left alone
