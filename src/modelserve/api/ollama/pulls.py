"""`POST /api/pull` of a source: the pull in Ollama's NDJSON progress shape
(`pulling manifest`, `pulling <digest>` with total/completed, `verifying sha256 digest`,
`writing manifest`, `success`), or with `stream: false` one final object."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from modelserve.api.errors import APIError
from modelserve.api.observe import context
from modelserve.api.ollama.errors import stream_error
from modelserve.api.pull_runs import Event, Failed, Finished, PullRun, api_error, progress_line
from modelserve.api.streams import json_line, ndjson_stream
from modelserve.pull import PullError, parse_source


async def pull_source(request: Request, source: str, stream: bool) -> Response:
    # Downloading onto the server's disk is an operator's act: with keys configured, it
    # takes the admin scope, as POST /admin/models/pull does (a configured name does not).
    key = context(request).key
    if key is not None and key.scope != "admin":
        raise APIError(403, "Pulling a model source needs an API key with the admin scope.",
                       type="permission_error", code="insufficient_permissions")
    try:
        parse_source(source)
    except PullError as exc:
        raise api_error(exc) from None
    run = PullRun(source)
    seen = await run.started()  # a wrong or missing source: Ollama's error with its status
    if stream:
        return ndjson_stream(_lines(run.events(seen)))
    async for event in run.events(seen):
        if isinstance(event, Failed):
            raise event.error
    return JSONResponse({"status": "success"})


async def _lines(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    async for event in events:
        if isinstance(event, Failed):
            yield stream_error(event.error)
        elif isinstance(event, Finished):
            yield json_line({"status": "success"})
        elif event.status != "success":
            yield json_line(progress_line(event))
