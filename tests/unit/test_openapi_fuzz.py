"""schemathesis (all its checks) over the served schema, in process: every answer must be
one the schema documents, with the documented body and content type."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    negative_data_rejection,
    positive_data_acceptance,
)

from modelserve.api.app import create_app  # noqa: E402
from modelserve.config import Settings  # noqa: E402

# No model configured: the answers are the validation and not-found paths, the ones a
# schema most often gets wrong. Admin load/unload are left out: a fuzzed load registers a
# model that cannot load, and every later request naming it is then a (documented) 503,
# which schemathesis counts as a server error. A fuzzed pull would reach out to the network.
APP = create_app(Settings.model_validate({"models": []}))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    path_regex="^/admin/models/(load|unload|pull)$")


@SCHEMA.parametrize()
@settings(max_examples=10, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_answers_match_the_schema(case: schemathesis.Case) -> None:
    # Every check but two, which the CLI run covers: positive_data_acceptance (some refusals
    # of schema-valid data are beyond JSON Schema: tool-call arguments that are not JSON,
    # duplicate tool names, a GBNF grammar that does not parse) and negative_data_rejection
    # (a fuzzed body over max_request_bytes is refused with 413, which it does not count as
    # a rejection). Derandomized: CI runs the same examples every time.
    case.call_and_validate(excluded_checks=[positive_data_acceptance,
                                            negative_data_rejection])
