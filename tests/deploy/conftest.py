"""Deployment checks: the tools live in their own environment (`make deploy-tools` makes
.venv-deploy from deploy/tools/requirements.txt), apart from the project's, since checkov pins
many packages. Tests call them by path; without them they skip, except in CI (`CI` set),
where `make test` builds the environment first and a missing tool is a failure."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.deploy.helm_chart import Rendered

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "modelserve"
TOOLS_VENV = Path(os.environ.get("MODELSERVE_DEPLOY_TOOLS", ROOT / ".venv-deploy"))
TOOLS = ("python", "kubernetes-validate", "hadolint", "checkov")


@pytest.fixture(scope="session")
def tools() -> Path:
    """The tools environment's bin/ directory."""
    bin_dir = TOOLS_VENV / "bin"
    missing = [name for name in TOOLS if not (bin_dir / name).exists()]
    if missing:
        message = (f"deployment tools missing from {TOOLS_VENV} ({', '.join(missing)}): "
                   "run `make deploy-tools`")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bin_dir


def checkov_env() -> dict[str, str]:
    """checkov offline and quiet: no platform calls, no version check."""
    return {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
            "LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="session")
def render(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Rendered]:
    """The chart rendered for a values case, once per session."""
    from tests.deploy.helm_chart import Rendered, case_values, helm_render

    cache: dict[str, Rendered] = {}

    def get(case: str) -> Rendered:
        if case not in cache:
            out = helm_render(tools, tmp_path_factory.mktemp(case), *case_values(case))
            data = json.loads(out.stdout)
            cache[case] = Rendered(data["manifests"], data["lint"])
        return cache[case]

    return get
