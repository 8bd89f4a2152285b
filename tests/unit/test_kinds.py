"""A model kind is one declaration: a fourth kind registered here, and nowhere else, is
parsed from config, built by the registry, routed, hooked on load and scraped by /metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, ValidationError

from modelserve.api import leases
from modelserve.api.app import create_app
from modelserve.config import ModelSpec, Settings
from modelserve.config_sections import LifecycleSettings
from modelserve.kinds import KINDS, MetricDef, ModelKind
from modelserve.metrics import ServerMetrics


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = "echo: "


@dataclass
class EchoStats:
    requests: int = 0


class EchoRuntime:
    def __init__(self, spec: ModelSpec) -> None:
        self.options = spec.options_as(EchoOptions)
        self.created = int(time.time())
        self.stats = EchoStats()
        self.loaded_as: str | None = None
        self.closed = False

    def reply(self, text: str) -> str:
        self.stats.requests += 1
        return self.options.prefix + text

    def close(self) -> None:
        self.closed = True


echo_router = APIRouter()


def _echo_routers() -> Sequence[APIRouter]:
    return (echo_router,)


def _mark_loaded(runtime: EchoRuntime, metrics: ServerMetrics, name: str) -> None:
    runtime.loaded_as = name


ECHO: ModelKind[EchoRuntime] = ModelKind(
    name="echo",
    runtimes={"echo-rt": EchoOptions},
    default_runtime="echo-rt",
    build=EchoRuntime,
    describe=lambda runtime: {},
    front=lambda spec, worker, info: EchoRuntime(spec),  # not used: these tests run inline
    routers=_echo_routers,
    metrics=(MetricDef("modelserve_echo_requests", "counter", "Echo requests", "requests"),),
    stats=lambda runtime: runtime.stats,
    use="echoing",
    on_loaded=_mark_loaded,
)


@echo_router.post("/v1/echo")
async def echo(body: dict[str, str], request: Request) -> dict[str, str]:
    runtime = await leases.acquire_kind(request, body["model"], ECHO)
    return {"text": runtime.reply(body["text"])}


@pytest.fixture
def echo_kind(monkeypatch: pytest.MonkeyPatch) -> ModelKind[EchoRuntime]:
    monkeypatch.setitem(KINDS, ECHO.name, ECHO)
    return ECHO


def test_a_new_kind_parses_with_its_own_options(echo_kind: ModelKind[EchoRuntime],
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


def test_a_new_kind_is_built_routed_and_scraped(echo_kind: ModelKind[EchoRuntime],
                                                tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"echo")
    spec = ModelSpec.model_validate({"name": "e", "kind": "echo", "source": str(tmp_path)})
    # Inline: this test's kind exists only in this process, not in a spawned worker's.
    app = create_app(Settings(models=[spec], lifecycle=LifecycleSettings(isolation="inline")))
    with TestClient(app) as client:
        runtime = app.state.registry.loaded_of(ECHO)["e"]
        assert isinstance(runtime, EchoRuntime) and runtime.loaded_as == "e"

        answer = client.post("/v1/echo", json={"model": "e", "text": "hi"})
        assert answer.status_code == 200 and answer.json() == {"text": "echo: hi"}

        wrong = client.post("/v1/embeddings", json={"model": "e", "input": "hi"})
        assert wrong.status_code == 400
        assert "is a echo model and cannot be used for embeddings" in \
            wrong.json()["error"]["message"]

        scrape = client.get("/metrics").text
        assert 'modelserve_echo_requests_total{model="e"} 1.0' in scrape
        assert 'modelserve_model_state{model="e",state="ready"} 1.0' in scrape
    assert runtime.closed
