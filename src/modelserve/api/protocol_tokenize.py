"""Wire types of the tokenizer extension (vLLM / llama-server): /tokenize and /detokenize."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelserve.api.protocol import ChatMessage, OpenAIModel


class TokenizeRequest(OpenAIModel):
    # Exactly one of prompt or messages, as `_one_input` checks.
    model_config = ConfigDict(extra="allow", json_schema_extra={
        "oneOf": [{"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                  {"required": ["messages"], "properties": {"messages": {"type": "array"}}}]})
    model: str = Field(min_length=1)
    prompt: str | None = None
    messages: list[ChatMessage] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class TokenizeResponse(BaseModel):
    tokens: list[int]
    count: int
    max_model_len: int


class DetokenizeRequest(OpenAIModel):
    model: str = Field(min_length=1)
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    prompt: str
