"""Constrained output: a request's `response_format`, `grammar` or `json_schema` compiled into
the llguidance grammar its sequences sample under (engine/constraints.py), or a 400 naming the
field when it cannot be honoured — never an unconstrained answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelserve.api.errors import bad_request
from modelserve.api.protocol_output import OutputControls

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# Compact JSON: a small model given free whitespace can loop on newlines until max_tokens.
JSON_OPTIONS: JsonCompileOptions = {"whitespace_flexible": False}


def output_grammar(req: OutputControls) -> str | None:
    """The grammar this request's output must follow; None: free text."""
    fmt = req.response_format
    asked = [name for name, value in (("response_format", fmt and fmt.type != "text"),
                                      ("grammar", req.grammar), ("json_schema", req.json_schema))
             if value]
    if len(asked) > 1:
        raise bad_request(f"Send one way of constraining the output, not {' and '.join(asked)}.",
                          param=asked[1])
    if fmt is not None and fmt.type == "json_object":
        return schema_grammar({"type": "object"}, "response_format")
    if fmt is not None and fmt.type == "json_schema":
        assert fmt.json_schema is not None
        return schema_grammar(fmt.json_schema.schema_ or {}, "response_format.json_schema")
    if req.json_schema:
        return schema_grammar(req.json_schema, "json_schema")
    if req.grammar:
        return _from_gbnf(req.grammar)
    return None


def closed(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on every object that lists its properties
    and says nothing of others (xgrammar's strict mode, vLLM's default). The JSON Schema
    default allows any extra property, and a small model offered that keeps inventing keys
    until max_tokens; OpenAI's strict mode requires the same closure of its clients."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    return out


def schema_grammar(schema: dict[str, Any], param: str,
                   what: str = "The JSON schema cannot be used to constrain the output") -> str:
    """The grammar of JSON fitting `schema` (closed); a 400 naming `param` if it has none."""
    from llguidance import LLMatcher

    return _compiled(
        lambda: LLMatcher.grammar_from_json_schema(closed(schema), defaults=JSON_OPTIONS),
        param, what, "invalid_schema")


def _from_gbnf(gbnf: str) -> str:
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import gbnf_to_lark

    return _compiled(lambda: LLMatcher.grammar_from_lark(gbnf_to_lark(gbnf)), "grammar",
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
