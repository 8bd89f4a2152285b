"""Constrained output: a turn's output format (a JSON schema, any JSON object, or a GBNF
grammar) compiled into the llguidance grammar its sequences sample under
(engine/constraints.py), or a 400 naming the field when it cannot be honoured — never an
unconstrained answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelserve.api.errors import bad_request
from modelserve.chat.turn import OutputFormat

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# Compact JSON: a small model given free whitespace can loop on newlines until max_tokens.
JSON_OPTIONS: JsonCompileOptions = {"whitespace_flexible": False}


def output_grammar(fmt: OutputFormat | None) -> str | None:
    """The grammar a turn's output must follow; None: free text."""
    if fmt is None:
        return None
    if fmt.kind == "json_object":
        return schema_grammar({"type": "object"}, fmt.where)
    if fmt.kind == "json_schema":
        return schema_grammar(fmt.schema or {}, fmt.where)
    assert fmt.grammar is not None
    return _from_gbnf(fmt.grammar, fmt.where)


# llama.cpp's JSON-schema converter allows an integer at most 16 digits; so do we, where the
# schema sets no bound: a small model at temperature 0 can otherwise write `1111…` until
# max_tokens, and the client's parse fails.
INTEGER_BOUND = 10**16 - 1
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def closed(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on every object that lists its properties
    and says nothing of others (xgrammar's strict mode, vLLM's default), and every integer
    without bounds bounded to 16 digits. The JSON Schema default allows any extra property,
    and a small model offered that keeps inventing keys until max_tokens; OpenAI's strict
    mode requires the same closure of its clients."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    if out.get("type") == "integer" and not any(bound in out for bound in _BOUNDS):
        out["minimum"], out["maximum"] = -INTEGER_BOUND, INTEGER_BOUND
    return out


def inline_json(schema: dict[str, Any]) -> str:
    """`schema`, closed and compact, as a Lark `%json` rule body."""
    return "%json " + json.dumps({**closed(schema), "x-guidance": JSON_OPTIONS})


def schema_grammar(schema: dict[str, Any], param: str,
                   what: str = "The JSON schema cannot be used to constrain the output") -> str:
    """The grammar of JSON fitting `schema` (closed); a 400 naming `param` if it has none."""
    from llguidance import LLMatcher

    return _compiled(
        lambda: LLMatcher.grammar_from_json_schema(closed(schema), defaults=JSON_OPTIONS),
        param, what, "invalid_schema")


def _from_gbnf(gbnf: str, param: str) -> str:
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import gbnf_to_lark

    return _compiled(lambda: LLMatcher.grammar_from_lark(gbnf_to_lark(gbnf)), param,
                     "The grammar is not valid GBNF", "invalid_grammar")


def _compiled(build: Callable[[], str], param: str, what: str, code: str) -> str:
    """`build()`'s grammar, validated: a compiler exception and a validation error are the
    same 400 (the compiler's own message says what is wrong)."""
    from llguidance import LLMatcher

    try:
        grammar = build()
        error = LLMatcher.validate_grammar(grammar)
    except Exception as exc:
        error = str(exc)
    if error:
        raise bad_request(f"{what}: {error}", param=param, code=code)
    return grammar
