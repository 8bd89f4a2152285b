"""A model kind is one declaration: a kind registered in KINDS, and nowhere else in the
server (tests/fixtures/tiny_kind.py, from outside the package), is parsed from config, built
in a worker process or inline, routed, hooked on load and scraped by /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from modelserve.api.app import create_app
from modelserve.config import ModelSpec, Settings
from modelserve.config_sections import LifecycleSettings
from tests.fixtures.tiny_kind import TINY, TinyFront, TinyOptions

pytestmark = pytest.mark.usefixtures("tiny_kind")


def test_a_new_kind_parses_with_its_own_options(tmp_path: Path) -> None:
    by_kind = ModelSpec.model_validate({"name": "t", "kind": "tiny", "source": str(tmp_path),
                                        "options": {"load_seconds": 0.5}})
    assert by_kind.runtime == "tiny" and by_kind.options_as(TinyOptions).load_seconds == 0.5
    by_runtime = ModelSpec.model_validate({"name": "t", "runtime": "tiny",
                                           "source": str(tmp_path)})
    assert by_runtime.kind == "tiny"
    with pytest.raises(ValidationError, match="runtime 'tiny' cannot serve kind 'chat'"):
        ModelSpec.model_validate({"name": "t", "kind": "chat", "runtime": "tiny",
                                  "source": str(tmp_path)})
    with pytest.raises(ValidationError, match="load_seconds"):
        ModelSpec.model_validate({"name": "t", "kind": "tiny", "source": str(tmp_path),
                                  "options": {"load_seconds": "soon"}})


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_a_new_kind_is_built_routed_and_scraped(tmp_path: Path, isolation: str) -> None:
    (tmp_path / "weights.bin").write_bytes(b"tiny")
    spec = ModelSpec.model_validate({"name": "t", "kind": "tiny", "source": str(tmp_path)})
    app = create_app(Settings(models=[spec], lifecycle=LifecycleSettings(isolation=isolation)))
    with TestClient(app) as client:
        front = app.state.registry.loaded_of(TINY)["t"]
        assert isinstance(front, TinyFront) and front.loaded_as == "t"

        answer = client.post("/v1/tiny/call", json={"model": "t", "method": "echo",
                                                    "args": ["hi"]})
        assert answer.status_code == 200 and answer.json() == {"result": "hi"}

        wrong = client.post("/v1/embeddings", json={"model": "t", "input": "hi"})
        assert wrong.status_code == 400
        assert "is a tiny model and cannot be used for embeddings" in \
            wrong.json()["error"]["message"]

        scrape = client.get("/metrics").text
        assert 'modelserve_tiny_calls_total{model="t"} 1.0' in scrape
        assert 'modelserve_model_state{model="t",state="ready"} 1.0' in scrape
        pid = client.get("/admin/models").json()["data"][0]["pid"]
        assert (pid is not None) == (isolation == "process")
    assert front.closed
