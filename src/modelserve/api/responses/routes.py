"""POST /v1/responses and the stored responses' routes (GET and DELETE
/v1/responses/{id}, GET /v1/responses/{id}/input_items), and POST
/v1/responses/input_tokens."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from modelserve.api.errors import APIError, bad_request
from modelserve.api.observe import context
from modelserve.api.openapi import error_responses, streamed_or
from modelserve.api.responses.convert import PREVIOUS, input_items, turn_of
from modelserve.api.responses.protocol import CountRequest, ResponsesRequest, refuse_unhonoured
from modelserve.api.responses.store import ResponseStore, Stored
from modelserve.api.responses.surface import ResponsesSurface
from modelserve.chat.route import count_prompt, serve
from modelserve.chat.turn import Turn

router = APIRouter()


class ResponseBody(BaseModel):
    """OpenAI's Response object (surface.py writes every field)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None


class Deleted(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class ItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class InputTokens(BaseModel):
    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int


@router.post("/v1/responses", response_model=None,
             responses={200: streamed_or(ResponseBody), **error_responses(404, 429, 503)})
async def create_response(req: ResponsesRequest, request: Request) -> Response:
    refuse_unhonoured(req)
    store, owner = _store(request), context(request).key_id
    items, turn = await _turn(req, store, owner)

    async def keep(response: dict[str, Any]) -> None:
        await store.put(Stored(owner, response, items))

    surface = ResponsesSurface(req, _cache_body(req, items), keep if req.store else None)
    answer = await serve(turn, request, surface, req.stream)
    if req.store and not req.stream and surface.final is not None:
        await keep(surface.final)
    return answer


@router.post("/v1/responses/input_tokens", responses=error_responses(404, 503))
async def input_tokens(req: CountRequest, request: Request) -> InputTokens:
    _, turn = await _turn(req, _store(request), context(request).key_id)
    return InputTokens(input_tokens=await count_prompt(turn, request))


class _GetOrDelete(APIRoute):
    """GET and DELETE of one path are two routes; Starlette's 405 would name only the first
    one's method in its Allow header."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in (self.methods or ()):
            raise StarletteHTTPException(405, "Method Not Allowed",
                                         headers={"Allow": "GET, DELETE"})
        await super().handle(scope, receive, send)


async def get_response(response_id: str, request: Request, stream: bool = False
                       ) -> JSONResponse:
    if stream:
        raise bad_request("stream=true (replaying a response's events) is not supported by "
                          "this server; GET the response whole.", param="stream")
    _no_include(request)
    return JSONResponse((await _stored(request, response_id)).response)


async def delete_response(response_id: str, request: Request) -> Deleted:
    if not await _store(request).delete(response_id, context(request).key_id):
        raise _not_found(response_id)
    return Deleted(id=response_id)


router.add_api_route("/v1/responses/{response_id}", get_response, methods=["GET"],
                     response_model=None, route_class_override=_GetOrDelete,
                     responses={200: {"model": ResponseBody}, **error_responses(404)})
router.add_api_route("/v1/responses/{response_id}", delete_response, methods=["DELETE"],
                     route_class_override=_GetOrDelete, responses=error_responses(404))


@router.get("/v1/responses/{response_id}/input_items", responses=error_responses(404))
async def list_input_items(response_id: str, request: Request,
                           order: Literal["asc", "desc"] = "desc",
                           limit: int = Query(20, ge=1, le=100),
                           after: str | None = None) -> ItemList:
    _no_include(request)
    items = (await _stored(request, response_id)).items
    if order == "desc":
        items = items[::-1]
    if after is not None:
        at = next((i for i, item in enumerate(items) if item.get("id") == after), None)
        if at is None:
            raise bad_request(f"No input item with id {after!r} in this response.",
                              param="after")
        items = items[at + 1:]
    page = items[:limit]
    return ItemList(data=page, first_id=page[0]["id"] if page else None,
                    last_id=page[-1]["id"] if page else None, has_more=len(items) > limit)


# -- helpers ------------------------------------------------------------------------------------


async def _turn(req: CountRequest, store: ResponseStore, owner: str | None
                ) -> tuple[list[dict[str, Any]], Turn]:
    """Every item the model reads (a previous response's inputs and outputs first), and the
    turn made of them."""
    earlier: list[dict[str, Any]] = []
    if req.previous_response_id is not None:
        previous = await store.get(req.previous_response_id, owner)
        if previous is None:
            raise bad_request(f"Previous response with id '{req.previous_response_id}' not "
                              "found.", param=PREVIOUS, code="previous_response_not_found")
        earlier = previous.items + previous.response["output"]
    own = input_items(req)
    if not earlier and not own:
        raise bad_request("input must not be empty.", param="input")
    context_items = [(item, PREVIOUS) for item in earlier] + \
        [(item, f"input[{i}]") for i, item in enumerate(own)]
    return earlier + own, turn_of(req, context_items)


def _cache_body(req: ResponsesRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """What changes the answer: the items the model reads (without their ids, fresh for
    each request), and the fields that steer it."""
    return {"items": [{k: v for k, v in item.items() if k not in ("id", "status")}
                      for item in items],
            **req.model_dump(mode="json", by_alias=True, include={
                "model", "instructions", "tools", "tool_choice", "parallel_tool_calls",
                "text", "reasoning", "max_output_tokens", "temperature", "top_p", "grammar"})}


def _store(request: Request) -> ResponseStore:
    store: ResponseStore | None = request.app.state.responses
    if store is None:  # an app run without its lifespan (in-process tests): made on first use
        settings = request.app.state.settings
        store = request.app.state.responses = ResponseStore(settings.responses, settings.cache)
    return store


async def _stored(request: Request, response_id: str) -> Stored:
    found = await _store(request).get(response_id, context(request).key_id)
    if found is None:
        raise _not_found(response_id)
    return found


def _not_found(response_id: str) -> APIError:
    # Another key's response reads exactly as one that never was (nothing leaks).
    return APIError(404, f"No response found with id '{response_id}'.",
                    param="response_id", code="not_found")


def _no_include(request: Request) -> None:
    if request.query_params.getlist("include") or request.query_params.getlist("include[]"):
        raise bad_request("include is not supported by this server.", param="include")
