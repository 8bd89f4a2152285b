"""A model kind is one declaration: a kind registered in KINDS, and nowhere else, is parsed
from config, built in a worker process (or inline), routed, hooked on load and scraped by
/metrics; the same table admits kinds from outside the package."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, ValidationError

from modelserve.api import leases
from modelserve.api.app import create_app
from modelserve.config import ModelSpec, Settings
from modelserve.config_sections import LifecycleSettings
from modelserve.kinds import KINDS, MetricDef, ModelKind
from modelserve.kinds.wiring import KindRuntime, KindServing, ServerHooks

if TYPE_CHECKING:
    from modelserve.worker.transport import Worker


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = "echo: "


@dataclass
class EchoStats:
    requests: int = 0


class EchoRuntime:
    """The worker's side."""

    def __init__(self, spec: ModelSpec) -> None:
        self.options = spec.options_as(EchoOptions)
        self.created = int(time.time())
        self.stats = EchoStats()

    def reply(self, text: str) -> str:
        self.stats.requests += 1
        return self.options.prefix + text

    def close(self) -> None:
        pass


class EchoFront:
    """The API process's side."""

    def __init__(self, spec: ModelSpec, worker: Worker, info: dict[str, Any],
                 kept: dict[str, Any]) -> None:
        self.worker = worker
        self.created: int = info["created"]
        self.loaded_as: str | None = None
        self.closed = False

    def card(self) -> dict[str, Any]:
        return {}

    async def reply(self, text: str) -> str:
        answer: str = await self.worker.acall("reply", text)
        return answer

    def close(self) -> None:
        self.closed = True


echo_router = APIRouter()


def _echo_routers() -> Sequence[APIRouter]:
    return (echo_router,)


def _mark_loaded(front: EchoFront, server: ServerHooks, name: str) -> None:
    front.loaded_as = name


ECHO_RUNTIME: KindRuntime[EchoRuntime] = KindRuntime(
    build=EchoRuntime, describe=lambda rt: {"created": rt.created}, stats=lambda rt: rt.stats)
ECHO_SERVING: KindServing[EchoFront] = KindServing(front=EchoFront, routers=_echo_routers,
                                                   on_loaded=_mark_loaded)
ECHO: ModelKind[EchoFront] = ModelKind(
    name="echo",
    runtimes={"echo-rt": EchoOptions},
    default_runtime="echo-rt",
    use="echoing",
    metrics=(MetricDef("modelserve_echo_requests", "counter", "Echo requests", "requests"),),
    runtime="tests.unit.test_kinds:ECHO_RUNTIME",
    serving="tests.unit.test_kinds:ECHO_SERVING",
)


@echo_router.post("/v1/echo")
async def echo(body: dict[str, str], request: Request) -> dict[str, str]:
    front = await leases.acquire_kind(request, body["model"], ECHO)
    return {"text": await front.reply(body["text"])}


@pytest.fixture
def echo_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelKind[EchoFront]]:
    monkeypatch.setitem(KINDS, ECHO.name, ECHO)
    # A worker process builds its kind table from the same declarations: this names it.
    monkeypatch.setenv("MODELSERVE_KINDS", "tests.unit.test_kinds:ECHO")
    yield ECHO


def test_a_new_kind_parses_with_its_own_options(echo_kind: ModelKind[EchoFront],
                                                tmp_path: Path) -> None:
    by_kind = ModelSpec.model_validate({"name": "e", "kind": "echo", "source": str(tmp_path),
                                        "options": {"prefix": ">"}})
    assert by_kind.runtime == "echo-rt" and by_kind.options_as(EchoOptions).prefix == ">"
    by_runtime = ModelSpec.model_validate({"name": "e", "runtime": "echo-rt",
                                           "source": str(tmp_path)})
    assert by_runtime.kind == "echo"
    with pytest.raises(ValidationError, match="runtime 'echo-rt' cannot serve kind 'chat'"):
        ModelSpec.model_validate({"name": "e", "kind": "chat", "runtime": "echo-rt",
                                  "source": str(tmp_path)})
    with pytest.raises(ValidationError, match="prefix"):
        ModelSpec.model_validate({"name": "e", "kind": "echo", "source": str(tmp_path),
                                  "options": {"prefix": 1}})


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_a_new_kind_is_built_routed_and_scraped(echo_kind: ModelKind[EchoFront],
                                                tmp_path: Path, isolation: str) -> None:
    (tmp_path / "weights.bin").write_bytes(b"echo")
    spec = ModelSpec.model_validate({"name": "e", "kind": "echo", "source": str(tmp_path)})
    app = create_app(Settings(models=[spec], lifecycle=LifecycleSettings(isolation=isolation)))
    with TestClient(app) as client:
        front = app.state.registry.loaded_of(ECHO)["e"]
        assert isinstance(front, EchoFront) and front.loaded_as == "e"

        answer = client.post("/v1/echo", json={"model": "e", "text": "hi"})
        assert answer.status_code == 200 and answer.json() == {"text": "echo: hi"}

        wrong = client.post("/v1/embeddings", json={"model": "e", "input": "hi"})
        assert wrong.status_code == 400
        assert "is a echo model and cannot be used for embeddings" in \
            wrong.json()["error"]["message"]

        scrape = client.get("/metrics").text
        assert 'modelserve_echo_requests_total{model="e"} 1.0' in scrape
        assert 'modelserve_model_state{model="e",state="ready"} 1.0' in scrape
        pid = client.get("/admin/models").json()["data"][0]["pid"]
        assert (pid is not None) == (isolation == "process")
    assert front.closed
