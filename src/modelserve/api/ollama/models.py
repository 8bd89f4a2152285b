"""GET /api/tags, GET /api/ps, POST /api/show, GET /api/version, and GET/HEAD / ("Ollama is
running"): the configured models as Ollama describes them.

Facts come from the model's files (size, modification time, a GGUF's header) and, once
loaded, from the model itself (its memory). `digest` is a
SHA-256 of the file's path, size and modification time, not of its bytes: hashing a
multi-GB file on every listing would take seconds, and clients only compare digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import PlainTextResponse

from modelserve import gguf_metadata as gguf
from modelserve.api.errors import APIError, bad_request
from modelserve.api.models import listed
from modelserve.api.ollama.common import (
    ollama_router,
    registry_of,
    resolve,
    resolve_quietly,
    tagged,
)
from modelserve.api.ollama.protocol import OllamaError, PullRequest, ShowRequest, Version
from modelserve.api.ollama.pulls import pull_source
from modelserve.api.openapi import error_responses
from modelserve.model_files import disk_bytes
from modelserve.pull import is_pullable
from modelserve.registry import ModelEntry, ModelRegistry, ModelState

router = ollama_router()

# The Ollama release whose API this server follows: clients gate features (structured
# outputs, thinking, tool streaming) on the version they read here.
OLLAMA_VERSION = "0.12.0"
FOREVER = "9999-12-31T23:59:59Z"  # expires_at of a model kept loaded with no limit


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _path(entry: ModelEntry) -> Path | None:
    try:
        return entry.spec.resolve_source()
    except Exception:  # a source that is gone: listed without file facts
        return None


def _meta(entry: ModelEntry, path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file() or entry.spec.kind != "chat":
        return {}
    return gguf.metadata(path)


def _details(entry: ModelEntry, meta: dict[str, Any]) -> dict[str, Any]:
    family = str(meta.get("general.architecture", ""))
    runtime = entry.spec.runtime
    return {"parent_model": "", "format": "gguf" if runtime == "llama.cpp" else runtime,
            "family": family, "families": [family] if family else None,
            "parameter_size": gguf.parameter_size(meta),
            "quantization_level": gguf.quantization(meta)}


def _card(entry: ModelEntry) -> dict[str, Any]:
    path = _path(entry)
    stat = path.stat() if path is not None and path.exists() else None
    name = tagged(entry.spec.name)
    seed = f"{path}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"
    return {"name": name, "model": name,
            "modified_at": _iso(stat.st_mtime if stat else 0),
            "size": disk_bytes(path) if path is not None and stat else 0,
            "digest": hashlib.sha256(seed.encode()).hexdigest(),
            "details": _details(entry, _meta(entry, path))}


def _expires(entry: ModelEntry, registry: ModelRegistry) -> str:
    keep = entry.idle_limit(registry.policy)
    if keep is None:
        return FOREVER
    since = time.time() if entry.in_flight else (entry.last_used or time.time())
    return _iso(since + keep)


async def _read_files(entries: list[ModelEntry]) -> None:
    """Read the entries' GGUF facts in a thread (a vocabulary-only load, ~0.4 s once per file
    version): the routes below then find them cached, and the event loop never waits."""
    await asyncio.to_thread(lambda: [_meta(e, _path(e)) for e in entries])


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    registry = registry_of(request)
    await _read_files(list(registry.entries.values()))
    return {"models": [_card(e) for e in registry.entries.values() if listed(registry, e)]}


@router.get("/api/ps")
async def running(request: Request) -> dict[str, Any]:
    registry = registry_of(request)
    await _read_files(list(registry.entries.values()))
    models = []
    for entry in registry.entries.values():
        if entry.state is not ModelState.READY or entry.current is None:
            continue
        context = getattr(entry.spec.options, "context_size", None)
        models.append({**_card(entry), "size": entry.current.memory_bytes, "size_vram": 0,
                       "expires_at": _expires(entry, registry),
                       **({"context_length": context} if context else {})})
    return {"models": models}


def template_of(entry: ModelEntry) -> str:
    """The chat template's source: the configured one, or the GGUF's ("" if neither)."""
    configured = getattr(entry.spec.options, "chat_template", None)
    if configured:
        return str(configured)
    return str(_meta(entry, _path(entry)).get("tokenizer.chat_template", ""))


def capabilities(entry: ModelEntry) -> list[str]:
    """What Ollama would say the model can do: chat models complete, take tools (this server
    gives tools to every chat model: through its template or a system prompt), see with a
    projector, and think when their template has a thinking switch or block."""
    if entry.spec.kind == "embeddings":
        return ["embedding"]
    if entry.spec.kind != "chat":
        return []
    template = template_of(entry)
    out = ["completion", "tools"]
    if getattr(entry.spec.options, "mmproj", None) is not None:
        out.append("vision")
    if "think" in template:  # <think>, enable_thinking, reasoning_effort's "thinking"
        out.append("thinking")
    return out


def _named(model: str | None, name: str | None) -> str:
    """The model a request names, by `model` or by older clients' `name`."""
    if not (model or name):
        raise bad_request("model is required", param="model")
    return str(model or name)


@router.post("/api/show", responses=error_responses(400, 404, model=OllamaError))
async def show(req: ShowRequest, request: Request) -> dict[str, Any]:
    entry = registry_of(request).entries[resolve(request, _named(req.model, req.name))]
    await _read_files([entry])
    path = _path(entry)
    meta = _meta(entry, path)
    template = template_of(entry)
    context = getattr(entry.spec.options, "context_size", None)
    parameters = f"num_ctx {context}" if context else ""
    info = {k: v for k, v in meta.items() if k != "tokenizer.chat_template"}
    front = entry.current.front if entry.current is not None else None
    if entry.spec.kind == "embeddings" and front is not None:
        info["embedding_length"] = getattr(front, "dimension", None)
    card = _card(entry)
    return {"modelfile": f"# Modelfile generated by modelserve\nFROM {path}\n"
                         + (f"PARAMETER {parameters}\n" if parameters else ""),
            "parameters": parameters, "template": template, "details": card["details"],
            "model_info": info, "capabilities": capabilities(entry),
            "modified_at": card["modified_at"]}


@router.post("/api/pull", response_model=None,
             responses=error_responses(400, 404, model=OllamaError))
async def pull(req: PullRequest, request: Request) -> Response:
    """Scripts and tools pull before they run a model; a configured one is there already,
    so its pull succeeds at once. A name that is a source (`hf:ORG/REPO:Q4_K_M`,
    `hf.co/ORG/REPO`, `pypi:NAME`, an https URL) is pulled into the local store, with
    Ollama's progress lines (admin keys only, when keys are configured); an admin load then
    serves it. Any other name is the usual 404."""
    name = _named(req.model, req.name)
    if not is_pullable(name) or resolve_quietly(request, name) is not None:
        resolve(request, name)
        return Response(b'{"status":"success"}\n' if req.stream else b'{"status":"success"}',
                        media_type="application/x-ndjson" if req.stream else "application/json")
    return await pull_source(request, name, req.stream)


# Model management that cannot happen here: said so by name, not a bare 404 or 405.
UNMANAGED = {("POST", "/api/push"): "pushing", ("POST", "/api/create"): "creating",
             ("POST", "/api/copy"): "copying", ("DELETE", "/api/delete"): "deleting"}


async def _unmanaged(request: Request) -> Response:
    what = UNMANAGED[(request.method, request.url.path)]
    raise APIError(501, f"{what} models is not supported by this server: its models come from "
                   "its configuration (operators load and unload them on /admin/models).",
                   type="not_implemented")


for (method, path) in UNMANAGED:
    router.add_api_route(path, _unmanaged, methods=[method], include_in_schema=False)


@router.get("/api/version")
async def version() -> Version:
    return Version(version=OLLAMA_VERSION)


@router.api_route("/", methods=["GET", "HEAD"], response_class=PlainTextResponse,
                  include_in_schema=False)
async def root() -> str:
    # What Ollama answers here; clients and scripts probe it to find a running server.
    return "Ollama is running"
