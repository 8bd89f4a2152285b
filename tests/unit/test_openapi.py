"""The served /openapi.json says what the server answers (api/openapi.py): the 400 error
envelope instead of FastAPI's 422, the statuses the middlewares add, the metrics' text type,
and the request constraints the server enforces (test_openapi_fuzz.py fuzzes it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelserve.api.app import create_app
from modelserve.config import Settings

ENVELOPE = {"$ref": "#/components/schemas/ErrorResponse"}


def _schema(**settings: Any) -> dict[str, Any]:
    app = create_app(Settings.model_validate({"models": [], **settings}))
    with TestClient(app) as client:  # the served document, not just app.openapi()
        schema: dict[str, Any] = client.get("/openapi.json").json()
    return schema


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return _schema()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in schema["paths"].items()
            for method, op in item.items()]


def test_validation_errors_are_the_400_envelope(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(schema)
    for method, path, op in _operations(schema):
        responses = op["responses"]
        # The one 422 is admin load's model_load_failed, in the envelope like every error.
        if path != "/admin/models/load":
            assert "422" not in responses, (method, path)
        if method == "post":  # each surface's own error shape (Anthropic's, Ollama's)
            shape = ({"$ref": "#/components/schemas/AnthropicError"}
                     if path.startswith("/v1/messages") else
                     {"$ref": "#/components/schemas/OllamaError"}
                     if path.startswith("/api/") else ENVELOPE)
            for status in ("400", "408", "413"):
                assert responses[status]["content"]["application/json"]["schema"] == shape
    schemas = schema["components"]["schemas"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["ErrorBody"]["properties"]) == {"message", "type", "param", "code"}


def test_statuses_where_they_happen(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                 "/v1/images/generations", "/v1/images/edits"):
        assert {"404", "429", "503"} <= set(paths[path]["post"]["responses"]), path
    assert "404" in paths["/v1/models/{model_id}"]["get"]["responses"]
    assert "404" in paths["/v1/images/{image_id}"]["get"]["responses"]
    assert "503" in paths["/ready"]["get"]["responses"]
    # Served while draining, and no keys configured here: no 401, no security scheme.
    assert set(paths["/health"]["get"]["responses"]) == {"200"}
    assert "securitySchemes" not in schema["components"]
    assert "/v1/images/variations" not in paths  # it only ever refuses


def test_auth_statuses_follow_the_configuration() -> None:
    settings = Settings.model_validate(
        {"models": [], "security": {"api_keys": [{"key": "k" * 32, "scope": "admin"}]}})
    schema = create_app(settings).openapi()  # /openapi.json itself needs a key here
    paths = schema["paths"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    chat = paths["/v1/chat/completions"]["post"]
    assert {"401", "429"} <= set(chat["responses"]) and chat["security"] == [{"bearer": []}]
    assert {"401", "403"} <= set(paths["/admin/models"]["get"]["responses"])
    assert "security" not in paths["/health"]["get"]


def test_metrics_are_prometheus_text(schema: dict[str, Any]) -> None:
    for path in ("/metrics", "/admin/metrics"):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert "application/json" not in content
        assert any(kind.startswith("text/plain") for kind in content), path


def test_enforced_constraints_are_in_the_schemas(schema: dict[str, Any]) -> None:
    schemas = schema["components"]["schemas"]
    prompt = schemas["CompletionRequest"]["properties"]["prompt"]["anyOf"]
    assert all(b.get("minLength") == 1 or b.get("minItems") == 1 for b in prompt)
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["n"]["maximum"] == 16  # limits.max_n, the configured default
    assert chat["messages"]["minItems"] == 1 and chat["messages"]["maxItems"] == 512
    assert chat["temperature"]["maximum"] == 2.0
    image_prompt = schemas["ImageGenerationRequest"]["properties"]["prompt"]
    assert image_prompt["minLength"] == 1 and image_prompt["pattern"].startswith("[^\\s")
    assert schemas["TokenizeRequest"]["oneOf"]

