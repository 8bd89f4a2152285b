"""POST /tokenize and /detokenize (the vLLM / llama-server extension), for clients and tests."""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelserve.api import leases
from modelserve.api.chat import chat_message
from modelserve.api.openapi import error_responses
from modelserve.api.protocol_tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from modelserve.chat.budget import check_token_ids
from modelserve.chat.prompt import render_prompt
from modelserve.kinds.chat import CHAT

router = APIRouter()


@router.post("/tokenize", responses=error_responses(404, 503))
async def tokenize(req: TokenizeRequest, request: Request) -> TokenizeResponse:
    runtime = await leases.acquire_kind(request, req.model, CHAT, "tokenize")
    if req.messages is not None:
        tokens = render_prompt(runtime, [chat_message(m, i) for i, m in enumerate(req.messages)])
    else:
        tokens = runtime.tokenize(req.prompt or "")
    return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=runtime.context_size)


@router.post("/detokenize", responses=error_responses(404, 503))
async def detokenize(req: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    runtime = await leases.acquire_kind(request, req.model, CHAT, "tokenize")
    check_token_ids(runtime, req.tokens, "tokens")
    return DetokenizeResponse(prompt=runtime.detokenize(req.tokens))
