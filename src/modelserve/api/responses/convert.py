"""A Responses request as a turn of the chat core: its input items (after the stored ones a
`previous_response_id` brings) as messages, its function tools, tool choice, text format and
sampling. Every item, part and tool type the core cannot take is refused by name."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from modelserve.api.errors import bad_request
from modelserve.api.responses.protocol import (
    ITEM,
    CountRequest,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    FunctionTool,
    InputImage,
    InputText,
    MessageItem,
    OtherItem,
    OtherPart,
    OutputText,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
)
from modelserve.chat.turn import (
    Image,
    Message,
    Names,
    OutputFormat,
    Part,
    Sampling,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    Turn,
)

NAMES = Names(messages="input", tools="tools", tool_choice="tool_choice",
              tool_choice_name="tool_choice.name", max_tokens="max_output_tokens",
              budget="input", logit_bias="logit_bias", n="n")
PREVIOUS = "previous_response_id"
_LABELS = {"str", "int", "bool", "dict"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def input_items(req: CountRequest) -> list[dict[str, Any]]:
    """This request's input as items, checked, each with an id (as a store lists them)."""
    raw = [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": req.input}]}] if isinstance(req.input, str) else req.input
    out = []
    for i, item in enumerate(raw):
        parsed = parse_item(item, f"input[{i}]")
        data = {**item, **parsed.model_dump(by_alias=True, exclude_none=True)}
        if isinstance(parsed, MessageItem) and isinstance(parsed.content, str):
            kind = "output_text" if parsed.role == "assistant" else "input_text"
            data["content"] = [{"type": kind, "text": parsed.content}]
        if "id" not in data:
            prefix = {"message": "msg", "function_call": "fc",
                      "function_call_output": "fco"}.get(str(data["type"]), "item")
            data["id"] = new_id(prefix)
        out.append(data)
    return out


def parse_item(item: Any, where: str) -> Any:
    try:
        return ITEM.validate_python(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The path without pydantic's labels of union members ("str", "list[...]").
        path = [p for p in first["loc"] if isinstance(p, int) or (p not in _LABELS and
                "[" not in p and "." not in p)]
        param = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        message = str(first["msg"]).removeprefix("Value error, ")
        raise bad_request(f"Invalid value for '{param}': {message}", param=param) from None


def messages_of(items: list[tuple[dict[str, Any], str]]) -> list[Message]:
    """Items (each with where it came from) as the core's messages: function calls join the
    assistant message before them, as one turn of calls; reasoning items are skipped."""
    out: list[Message] = []
    names: dict[str, str] = {}  # call_id -> function name, for the tool results
    for item, where in items:
        parsed = parse_item(item, where)
        if isinstance(parsed, MessageItem):
            out.append(_message(parsed, where))
        elif isinstance(parsed, FunctionCallItem):
            names[parsed.call_id] = parsed.name
            call = ToolCall(parsed.call_id, parsed.name, parsed.arguments)
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                last.tool_calls.append(call)
            else:
                out.append(Message("assistant", "", where, tool_calls=[call]))
        elif isinstance(parsed, FunctionCallOutputItem):
            content = parsed.output if isinstance(parsed.output, str) else \
                _text_only(parsed.output, f"{where}.output")
            out.append(Message("tool", content, where, tool_call_id=parsed.call_id,
                               name=names.get(parsed.call_id)))
        elif isinstance(parsed, ReasoningItem):
            continue  # earlier thoughts: the templates we serve drop them too
        else:
            assert isinstance(parsed, OtherItem)
            raise bad_request(f"{where}: input items of type {parsed.type!r} are not supported "
                              "by this server.", param=f"{where}.type")
    return out


def _message(msg: MessageItem, where: str) -> Message:
    # "developer" is OpenAI's new name for "system"; templates only know the latter.
    role = "system" if msg.role == "developer" else msg.role
    if isinstance(msg.content, str):
        return Message(role, msg.content, where)
    parts: list[Part] = []
    for j, part in enumerate(msg.content):
        at = f"{where}.content[{j}]"
        if isinstance(part, InputText | OutputText):
            parts.append(Text(part.text, f"{at}.text"))
        elif isinstance(part, Refusal):
            parts.append(Text(part.refusal, f"{at}.refusal"))
        elif isinstance(part, InputImage):
            if part.image_url is None:
                raise bad_request(f"{at}: images are taken as image_url (a data: URL); "
                                  "file_id needs OpenAI's Files API.", param=f"{at}.file_id")
            parts.append(Image(part.image_url, f"{at}.image_url"))
        else:
            assert isinstance(part, OtherPart)
            raise bad_request(f"{at}: content parts of type {part.type!r} are not supported "
                              "by this server.", param=f"{at}.type")
    if any(isinstance(p, Image) for p in parts):
        return Message(role, parts, where)
    return Message(role, "\n".join(p.text for p in parts if isinstance(p, Text)), where)


def _text_only(parts: list[Any], where: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, InputText | OutputText):
            raise bad_request(f"{where}[{j}]: a function call's output takes text parts only.",
                              param=f"{where}[{j}].type")
        texts.append(part.text)
    return "\n".join(texts)


def turn_of(req: CountRequest, context: list[tuple[dict[str, Any], str]]) -> Turn:
    """The turn for `context` (the items, earlier ones first, each with its where)."""
    messages = messages_of(context)
    if req.instructions is not None:
        messages.insert(0, Message("system", req.instructions, "instructions"))
    sampling = Sampling()
    if isinstance(req, ResponsesRequest):
        sampling = Sampling(max_tokens=req.max_output_tokens,
                            temperature=1.0 if req.temperature is None else req.temperature,
                            top_p=1.0 if req.top_p is None else req.top_p)
    variables: dict[str, Any] = {}
    if req.reasoning is not None and req.reasoning.effort is not None:
        # What gpt-oss-style templates read, and Qwen3-style ones' switch: no thinking when
        # the client asks for (next to) none.
        variables["reasoning_effort"] = req.reasoning.effort
        variables["enable_thinking"] = req.reasoning.effort not in ("none", "minimal")
    return Turn(model=req.model, messages=messages, sampling=sampling,
                tools=[_tool(t, i) for i, t in enumerate(req.tools or [])],
                tool_choice=_choice(req.tool_choice),
                parallel_tool_calls=req.parallel_tool_calls, output=_format(req),
                variables=variables,
                # What a prompt + answer too long for the context blames: the cap the client
                # set, else the input (as chat blames max_completion_tokens or messages).
                names=replace(NAMES, budget="max_output_tokens" if sampling.max_tokens
                              else "input"))


def _tool(tool: Any, i: int) -> Tool:
    if not isinstance(tool, FunctionTool):
        raise bad_request(f"tools[{i}]: the tool type {tool.type!r} is one OpenAI runs on its "
                          "own servers; this server runs function tools only.",
                          param=f"tools[{i}].type")
    extra = {} if tool.strict is None else {"strict": tool.strict}
    return Tool(tool.name, tool.description, tool.parameters, f"tools[{i}].parameters", extra)


def _choice(choice: Any) -> ToolChoice | None:
    if choice is None or isinstance(choice, str):
        return None if choice is None else ToolChoice(choice)  # type: ignore[arg-type]
    if isinstance(choice, FunctionChoice):
        return ToolChoice("named", choice.name)
    kind = choice.get("type")
    if kind == "function":
        raise bad_request("tool_choice.name is required when its type is 'function'.",
                          param="tool_choice.name")
    raise bad_request(f"tool_choice of type {kind!r} is not supported by this server; send "
                      "'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}.",
                      param="tool_choice.type" if kind else "tool_choice")


def _format(req: CountRequest) -> OutputFormat | None:
    fmt = req.text.format if req.text is not None else None
    if req.grammar:  # the llama.cpp extra, as on chat completions: one constraint at a time
        if fmt is not None and fmt.type != "text":
            raise bad_request("Send one way of constraining the output, not text.format and "
                              "grammar.", param="grammar")
        return OutputFormat("grammar", grammar=req.grammar, where="grammar")
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return OutputFormat("json_object", where="text.format")
    return OutputFormat("json_schema", schema=fmt.schema_, where="text.format.schema")
