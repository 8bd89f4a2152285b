"""SSE chunks on the wire, one builder per API.

The live stream and the response-cache replay both frame their chunks here, from the pydantic
wire types, so a field added to a chunk (a new delta field, say) reaches both alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelserve.api.protocol import (
    ChatChunkChoice,
    ChatCompletionChunk,
    CompletionChoice,
    CompletionResponse,
    Usage,
)
from modelserve.api.streams import sse_json


@dataclass(frozen=True)
class ChunkHead:
    """What every chunk of one stream repeats."""

    id: str
    created: int
    model: str
    include_usage: bool


def chat_chunk(head: ChunkHead, choices: list[ChatChunkChoice], usage: Usage | None = None
               ) -> str:
    body = ChatCompletionChunk(id=head.id, created=head.created, model=head.model,
                               choices=choices, usage=usage).model_dump()
    # A delta carries only what it changes (OpenAI omits the rest rather than sending null).
    for i, choice in enumerate(choices):
        body["choices"][i]["delta"] = choice.delta.model_dump(exclude_none=True)
    # With include_usage every chunk has a `usage` key (null but in the last), as OpenAI's do.
    if not head.include_usage:
        del body["usage"]
    return sse_json(body)


def completion_chunk(head: ChunkHead, choices: list[CompletionChoice],
                     usage: Usage | None = None) -> str:
    body = CompletionResponse(id=head.id, created=head.created, model=head.model,
                              choices=choices, usage=usage).model_dump()
    if not head.include_usage:
        del body["usage"]
    return sse_json(body)
