"""Tool calling: a turn's tools checked and planned (what the template sees, the grammar a
forced call samples under); tool_parser.py reads the calls back out of the output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelserve.api.errors import bad_request
from modelserve.chat.grammars import closed, inline_json, schema_grammar
from modelserve.chat.tool_parser import CLOSE, OPEN
from modelserve.chat.turn import Message, OutputFormat, Tool, Turn

# A forced request may make at most this many parallel calls: a small model under a grammar
# that always allows one more call could otherwise repeat calls until max_tokens.
MAX_FORCED_CALLS = 4


@dataclass
class ToolPlan:
    """How one request uses its tools."""

    tools: list[dict[str, Any]]  # as templates take them: {"type": "function", "function": ...}
    forced: list[Tool]  # required/named: the calls the grammar allows; [] = auto
    parallel: bool
    functions: list[Tool]  # all offered

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t["function"]["name"] for t in self.tools)

    def grammar(self, special_tokens: bool, output: OutputFormat | None = None) -> str:
        """The llguidance grammar the answer samples under. Forced: one of the calls (or up
        to MAX_FORCED_CALLS in parallel). Auto: free text, or the output format's JSON,
        until the model starts a call (`<tool_call>`, or a bare JSON object as Llama and a
        free Qwen write them); from there, as llama.cpp's lazy grammars do, a call that names
        an offered tool with arguments that fit its schema.

        `special_tokens`: the vocabulary has `<tool_call>` as one token (Qwen), which the
        grammar must then produce, as the model was trained to, rather than its spelling in
        pieces."""
        return call_grammar(self.forced or self.functions, self.parallel, special_tokens,
                            "forced" if self.forced else output or "free")


def plan_tools(turn: Turn) -> ToolPlan | None:
    """Check the tool fields and the tool turns of the history (400s name the field); None:
    the model is not offered tools."""
    _check_history(turn.messages)
    tools, choice, names = turn.tools, turn.tool_choice, turn.names
    if choice is not None and choice.mode != "none" and not tools:
        raise bad_request(f"{names.tool_choice} needs tools: send the functions in "
                          f"`{names.tools}`.", param=names.tool_choice)
    tool_names = [t.name for t in tools]
    dup = next((n for n in tool_names if tool_names.count(n) > 1), None)
    if dup is not None:
        raise bad_request(f"Tool names must be unique; {dup!r} is given twice.",
                          param=names.tools)
    if choice is not None and choice.mode == "named" and choice.name not in tool_names:
        raise bad_request(f"{names.tool_choice} names {choice.name!r}, which is not in tools "
                          f"({', '.join(tool_names)}).", param=names.tool_choice_name)
    for tool in tools:
        _check_parameters(tool)
    if not tools or (choice is not None and choice.mode == "none"):
        return None
    named = choice is not None and choice.mode == "named"
    if named:
        forced = [t for t in tools if t.name == choice.name]  # type: ignore[union-attr]
    else:
        forced = list(tools) if choice is not None and choice.mode == "required" else []
    return ToolPlan([{"type": "function", "function": _function(t)} for t in tools], forced,
                    # Only when asked for: a small model under a grammar that allows another
                    # call tends to make several (Qwen2.5-Coder-0.5B asks for four cities'
                    # weather), and llama-server's default is one call too.
                    turn.parallel_tool_calls is True and not named, list(tools))


def _function(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, **tool.extra}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.parameters is not None:
        out["parameters"] = tool.parameters
    return out


def _check_history(messages: list[Message]) -> None:
    for msg in messages:
        if msg.role == "tool" and not msg.tool_call_id:
            raise bad_request("A tool message needs the tool_call_id of the call it answers.",
                              param=f"{msg.where}.tool_call_id")
        if msg.tool_calls and msg.role != "assistant":
            raise bad_request("Only assistant messages carry tool_calls.",
                              param=f"{msg.where}.tool_calls")
        for j, call in enumerate(msg.tool_calls):
            # Templates take the arguments as a dict: text that does not parse cannot reach them.
            try:
                json.loads(call.arguments)
            except ValueError as exc:
                raise bad_request(f"The arguments are not valid JSON: {exc}",
                                  param=f"{msg.where}.tool_calls[{j}].function.arguments") \
                    from None


def _check_parameters(tool: Tool) -> None:
    """The schema compiles as a forced call will compile it (closed, in call_grammar)."""
    if tool.parameters is not None:
        schema_grammar(tool.parameters, tool.where,
                       f"The parameters schema of {tool.name!r} cannot be used")


# Free text: anything but the start of a bare JSON call (`{"name"`, constrained as one, as
# llama.cpp's trigger pattern has it; other JSON stays free: Qwen answers a tool result with
# some) or a spelled-out `<tool_call>` (which only a constrained block may write).
BARE_CALL = r'/\s*\{\s*"name"(?s:.*)/'
# Spaced like the templates write calls (Qwen's: `{"name": "f", "arguments": ...}`), so the
# model sees its own format; still no free whitespace, which small models loop on.
SPACED = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
FREE = rf"/(?s:.+)/ & ~{BARE_CALL} & ~/(?s:.*)<tool_call>(?s:.*)/"


def call_grammar(functions: list[Tool], parallel: bool, special_tokens: bool,
                 mode: str | OutputFormat = "forced") -> str:
    """Lark for `<tool_call>` blocks (one, or up to MAX_FORCED_CALLS when `parallel`) whose
    JSON is {"name": one of `functions`, "arguments": that function's parameters}.

    `mode`: "forced", the blocks alone; "free", text or the blocks after it or one bare JSON
    call; an OutputFormat (JSON), the blocks or that JSON."""
    from llguidance import LLMatcher

    # A call written out by rule, not as one %json: its head `{"name": ` then is a lexeme
    # of the top level, where the lexer can weigh it against free text byte by byte (a %json
    # has lexemes of its own, and the parser must pick one set at the first `{`).
    rules = ["call: " + " | ".join(f"call{i}" for i in range(len(functions)))]
    for i, f in enumerate(functions):
        head = json.dumps(f'{{"name": {json.dumps(f.name)}, "arguments": ')
        args = {**closed(f.parameters or {"type": "object"}), "x-guidance": SPACED}
        rules.append(f'call{i}: {head} args{i} "}}"')
        rules.append(f"args{i}: %json {json.dumps(args)}")
    opener, closer = (OPEN, CLOSE) if special_tokens else (json.dumps(OPEN), json.dumps(CLOSE))
    more = f'("\\n" block){{0,{MAX_FORCED_CALLS - 1}}}' if parallel else ""
    rules += [f'blocks: block {more}', f'block: {opener} "\\n" call "\\n" {closer}']
    if mode == "forced":
        rules.insert(0, "start: blocks")
    elif isinstance(mode, OutputFormat):
        rules[:0] = ["start: blocks | output",
                     f"output: {inline_json(mode.schema or {'type': 'object'})}"]
    elif special_tokens:  # the text ends where the model samples the `<tool_call>` token
        rules[:0] = ["start: FREE? | call | FREE? blocks", f"FREE: {FREE}"]
    else:  # a spelled trigger: text up to the first `<tool_call>` it writes (lazy), then a call
        rules[:0] = ["start: FREE? | call | head rest", f"FREE: {FREE}",
                     f'head[lazy]: LEAD {opener}', f"LEAD: /(?s:.*)/ & ~{BARE_CALL}",
                     f'rest: "\\n" call "\\n" {closer} {more}']
    return str(LLMatcher.grammar_from_lark("\n".join(rules) + "\n"))


# -- templates ---------------------------------------------------------------------------------

SYSTEM_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def template_tool_calls(msg: Message) -> list[dict[str, Any]]:
    """An assistant turn's calls as templates read them: arguments as a dict."""
    return [{"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
            for c in msg.tool_calls]


def without_tool_template(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
                          ) -> list[dict[str, Any]]:
    """For a template that knows nothing of tools (SmolLM2's, llama.cpp's built-ins): the tool
    definitions and the call syntax go into the system message, calls into the assistant's
    text and tool results into user turns, in the Hermes format the parser reads back."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            blocks = [f"{OPEN}\n{json.dumps(_call_json(c), ensure_ascii=False)}\n{CLOSE}"
                      for c in msg["tool_calls"]]
            text = "\n".join(([msg["content"]] if msg.get("content") else []) + blocks)
            out.append({"role": "assistant", "content": text})
        elif msg["role"] == "tool":
            out.append({"role": "user",
                        "content": f"<tool_response>\n{msg['content']}\n</tool_response>"})
        else:
            out.append({k: v for k, v in msg.items() if k != "tool_calls"})
    if tools:
        prompt = SYSTEM_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False)
                                                      for t in tools))
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _call_json(call: dict[str, Any]) -> dict[str, Any]:
    return {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
