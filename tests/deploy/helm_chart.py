"""Rendering the Helm chart for the deploy tests: Helm's own library (helm-python-sdk, in the
deployment tools environment) renders and lints it; `Rendered` finds objects in the result."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import CHART

KUBE_VERSION = "1.30.0"
NAMESPACE = "modelserve"
RELEASE = "ms"
FULLNAME = "ms-modelserve"

# Every option that changes what is rendered, at once.
FULL_VALUES: dict[str, Any] = {
    "image": {"digest": "sha256:" + "ab" * 32},
    "apiKeys": {"existingSecret": "team-keys", "generateAdminKey": False},
    "redis": {"builtin": {"enabled": False}, "existingSecret": "redis-credentials"},
    "models": {"volume": {"type": "existingClaim", "existingClaim": "shared-models"},
               "fetch": {"enabled": False}},
    "serviceMonitor": {"enabled": True,
                       "bearerTokenSecret": {"name": "team-keys", "key": "metrics-key"}},
    "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "gateway"}}}]},
    "autoscaling": {"enabled": True, "waitingSequences": {"enabled": True}},
    "rateLimits": {"default": {"requests_per_minute": 60, "concurrent_requests": 4}},
    "server": {"extraEnv": [{"name": "MODELSERVE_LIMITS__MAX_TOKENS", "value": "512"}]},
    "priorityClassName": "inference",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
}

# The CPU example with KEDA in place of the chart's HPA: the same signals as Prometheus
# triggers.
KEDA_VALUES: dict[str, Any] = {
    "autoscaling": {"enabled": False, "keda": {
        "enabled": True, "serverAddress": "http://prometheus-operated.monitoring.svc:9090"}},
}

CASES = ["default", "cpu", "gpu", "full", "keda"]


class Rendered:
    def __init__(self, manifests: dict[str, str], lint: dict[str, Any]) -> None:
        self.manifests = manifests
        self.lint = lint
        self.notes = next((text for name, text in manifests.items()
                           if name.endswith("NOTES.txt")), "")
        self.docs = [doc for name, text in manifests.items() if not name.endswith(".txt")
                     for doc in yaml.safe_load_all(text) if doc]

    def find(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        for doc in self.docs:
            if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
                return doc
        return None

    def get(self, kind: str, name: str = FULLNAME) -> dict[str, Any]:
        doc = self.find(kind, name)
        assert doc is not None, f"no {kind} {name} rendered"
        return doc

    def container(self) -> dict[str, Any]:
        spec = self.get("Deployment")["spec"]["template"]["spec"]
        return next(c for c in spec["containers"] if c["name"] == "modelserve")


def helm_render(tools: Path, tmp_path: Path, *values: dict[str, Any] | Path,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    files = []
    for i, item in enumerate(values):
        if isinstance(item, Path):
            files.append(str(item))
        else:
            path = tmp_path / f"values-{i}.yaml"
            path.write_text(yaml.safe_dump(item))
            files.append(str(path))
    return subprocess.run(
        [str(tools / "python"), str(CHART.parents[2] / "deploy" / "tools" / "helm_render.py"),
         str(CHART), RELEASE, NAMESPACE, f"v{KUBE_VERSION}", *files],
        capture_output=True, text=True, timeout=120, check=check)


def case_values(case: str) -> list[dict[str, Any] | Path]:
    return {"default": [], "cpu": [CHART / "values-cpu.yaml"],
            "gpu": [CHART / "values-gpu.yaml"], "full": [FULL_VALUES],
            "keda": [CHART / "values-cpu.yaml", KEDA_VALUES]}[case]



def write_manifests(rendered: Rendered, directory: Path, *, skip_kinds: set[str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, doc in enumerate(rendered.docs):
        if doc["kind"] in skip_kinds:
            continue
        path = directory / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(path)
    return paths


# ServiceMonitor (Prometheus Operator) and ScaledObject (KEDA) are CRDs: kubernetes-validate
# only knows the core API, so they are left out of the schema check on purpose and checked by
# hand instead (test_service_monitor, test_keda_scaled_object).
CRD_KINDS = {"ServiceMonitor", "ScaledObject"}

