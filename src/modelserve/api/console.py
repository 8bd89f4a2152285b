"""/ui: the web console, static files shipped in the package (modelserve/console/static).

The page loads without an API key (auth.py lets /ui through); every API call it makes
carries the key the user types. A tiny router rather than StaticFiles: only files that are
there are served, each with a Content-Security-Policy that allows this origin alone, so the
page cannot reach out to any other host even if a file asked it to.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from modelserve.api.errors import APIError

router = APIRouter(include_in_schema=False)

STATIC = Path(str(files("modelserve.console") / "static"))
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# data: and blob: for generated images, uploads and recorded or synthesized audio.
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
       "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Cache-Control": "no-cache"}


def asset(name: str) -> Path | None:
    """The static file `name` (one path component, a known type), or None."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    path = STATIC / name
    return path if path.suffix in MEDIA_TYPES and path.is_file() else None


@router.get("/ui")
async def console_root() -> RedirectResponse:
    # The assets are named relative to the page, so the page lives at /ui/.
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/{name:path}")
async def console_file(name: str) -> FileResponse:
    path = asset(name or "index.html")
    if path is None:
        raise APIError(404, f"The console has no file '{name}'.", type="invalid_request_error",
                       code="not_found")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)
