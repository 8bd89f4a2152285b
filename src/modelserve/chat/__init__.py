"""The chat core: one chat turn, whatever API it came through.

An API surface (api/chat.py for OpenAI Chat, api/anthropic/, api/ollama/, api/responses.py)
turns its request into a neutral `Turn` (turn.py), and the core plans it (plan.py: template,
tools, grammar, budget), runs it through the request pipeline and the engine (route.py,
run.py), and hands back neutral events or a result (events.py) that the surface encodes in
its own JSON, stream and error shapes. Nothing here imports a wire type.

    turn.py        the neutral request: messages, tools, tool choice, output format, sampling
    plan.py        checks and planning: limits, template, tools, grammar, budget, images
    tools.py       tool plans, forced-call grammars, tools written into a template's messages
    grammars.py    output formats (JSON schema, json_object, GBNF) -> llguidance grammars
    tool_parser.py tool calls out of generated text, whole or streaming
    reasoning.py   `<think>` blocks out of generated text, the rest to the tool parser
    run.py         choices submitted, merged and parsed into events; results collected
    events.py      what a turn produces: deltas, calls, finishes, usage; a whole result
    route.py       the turn through the request pipeline, for any surface (`Surface`)
"""
