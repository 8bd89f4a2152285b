"""Constrained output: a request's `response_format`, `grammar` or `json_schema` compiled into
the llguidance grammar its sequences sample under (engine/constraints.py), or a 400 naming the
field when it cannot be honoured — never an unconstrained answer."""

from __future__ import annotations

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
        return _from_schema({"type": "object"}, "response_format")
    if fmt is not None and fmt.type == "json_schema":
        assert fmt.json_schema is not None
        return _from_schema(fmt.json_schema.schema_ or {}, "response_format.json_schema")
    if req.json_schema:
        return _from_schema(req.json_schema, "json_schema")
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


def _from_schema(schema: dict[str, Any], param: str) -> str:
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(closed(schema), defaults=JSON_OPTIONS)
    except Exception as exc:  # the compiler's own message says what is wrong
        raise bad_request(f"The JSON schema cannot be used to constrain the output: {exc}",
                          param=param, code="invalid_schema") from None
    return _checked(grammar, param, "The JSON schema cannot be used to constrain the output")


def _from_gbnf(gbnf: str) -> str:
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import gbnf_to_lark

    try:
        grammar = LLMatcher.grammar_from_lark(gbnf_to_lark(gbnf))
    except Exception as exc:
        raise bad_request(f"The grammar is not valid GBNF: {exc}", param="grammar",
                          code="invalid_grammar") from None
    return _checked(grammar, "grammar", "The grammar is not valid GBNF")


def _checked(grammar: str, param: str, what: str) -> str:
    from llguidance import LLMatcher

    error = LLMatcher.validate_grammar(grammar)
    if error:
        code = "invalid_grammar" if param == "grammar" else "invalid_schema"
        raise bad_request(f"{what}: {error}", param=param, code=code)
    return grammar
