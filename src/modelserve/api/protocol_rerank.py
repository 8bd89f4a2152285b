"""Wire types of /v1/rerank in the shape Cohere, Jina, vLLM and llama-server share. No
serving logic lives here."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from modelserve.api.protocol import NullMeansDefault


class RerankDocument(BaseModel):
    # Cohere's v1 let documents carry other fields ranked by `rank_fields`; only `text` is
    # read here, so anything else is refused by name rather than ignored.
    model_config = ConfigDict(extra="forbid")
    text: str


def _as_document(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


# A string or {"text": ...}: read as a document either way, so a bad object's error names its
# own field (a union would report the string branch's "should be a valid string").
Document = Annotated[RerankDocument, BeforeValidator(_as_document), WithJsonSchema({
    "anyOf": [{"type": "string"}, {"type": "object", "properties": {"text": {"type": "string"}},
                                   "required": ["text"], "additionalProperties": False}]})]


class RerankRequest(NullMeansDefault):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[Document] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1, description="default: every document")
    return_documents: bool = Field(True, description="each result carries its document")

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty")
        return value

    def texts(self) -> list[str]:
        return [d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    object: str = "rerank"
    model: str
    results: list[RerankResult]
    usage: RerankUsage
