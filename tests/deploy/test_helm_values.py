"""The rendered chart is what the values ask for, down to the server accepting the env vars,
the models YAML and the keys file the chart gives it."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.config import load_settings
from modelserve.security import KeyRing
from tests.deploy.conftest import CHART
from tests.deploy.helm_chart import (
    CASES,
    FULLNAME,
    NAMESPACE,
    Rendered,
    helm_render,
)

# -- what the values ask for ------------------------------------------------------------------


def test_default_deployment(render: Callable[[str], Rendered]) -> None:
    r = render("default")
    deployment = r.get("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    container = r.container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    # slow model loads: at least 5 minutes before liveness takes over
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 300
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    # shutdown: out of the endpoints first (preStop), then a drain that fits the grace period
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] == 45
    env = env_of(container)
    assert env["MODELSERVE_SHUTDOWN__DRAIN_TIMEOUT_SECONDS"] == "30"
    assert env["MODELSERVE_RATE_LIMITS__ON_STORAGE_ERROR"] == "fail_open"
    # secure context
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod.get("initContainers", []):
        ctx = c["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert "emptyDir" in volumes["models"]
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert volumes["keys"]["secret"]["secretName"] == FULLNAME
    # models are fetched by an init container into the (writable) volume, read-only after
    assert pod["initContainers"][0]["command"] == ["fetch-models", "/models"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert r.find("HorizontalPodAutoscaler") is None
    assert r.find("ServiceMonitor") is None
    assert r.find("PersistentVolumeClaim") is None
    assert r.get("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert r.get("Service")["spec"]["ports"][0]["targetPort"] == "http"
    assert r.get("ServiceAccount")["automountServiceAccountToken"] is False
    assert r.get("Deployment", f"{FULLNAME}-redis")
    assert r.get("Service", f"{FULLNAME}-redis")
    assert len([d for d in r.docs if d["kind"] == "NetworkPolicy"]) == 2
    assert "export MODELSERVE_API_KEY=" in r.notes


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain env, with Kubernetes' $(VAR) expansion applied."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]),
                                       item["value"])
        else:
            env[item["name"]] = "redis://from-secret:6379"
    return env


@pytest.fixture()
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], None]]:
    def apply(env: dict[str, str]) -> None:
        for name in [n for n in os.environ if n.startswith("MODELSERVE_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    yield apply


@pytest.mark.parametrize("case", CASES)
def test_server_accepts_the_config_env_and_keys(render: Callable[[str], Rendered],
                                                environment: Callable[[dict[str, str]], None],
                                                tmp_path: Path, case: str) -> None:
    """The ConfigMap's models YAML, the Deployment's env vars (unknown settings are errors)
    and the Secret's keys file load in modelserve itself."""
    r = render(case)
    env = env_of(r.container())
    config_map = r.find("ConfigMap", FULLNAME)
    config = tmp_path / "models.yaml"
    config.write_text(config_map["data"]["models.yaml"] if config_map else "models: []\n")
    env["MODELSERVE_CONFIG"] = str(config)
    secret = r.find("Secret", FULLNAME)
    keys_file = tmp_path / "keys.yaml"
    if secret is not None:
        keys_file.write_bytes(base64.b64decode(secret["data"]["keys.yaml"]))
    else:
        keys_file.write_text("- {key: some-existing-key, scope: admin}\n")
    env["MODELSERVE_SECURITY__API_KEYS_FILE"] = str(keys_file)
    environment(env)
    settings = load_settings()
    assert settings.models, "no models configured"
    assert settings.security.metrics_scope == "admin"
    assert settings.cache.enabled is True
    assert settings.rate_limits.storage.startswith("redis://")
    assert settings.cache.url.startswith("redis://")
    assert settings.rate_limits.storage != settings.cache.url
    assert KeyRing.from_settings(settings).enabled
    assert settings.shutdown.drain_timeout_seconds == 30
    assert settings.rate_limits.on_storage_error == "fail_open"
    if case == "full":
        assert settings.rate_limits.default.requests_per_minute == 60
        assert settings.rate_limits.default.concurrent_requests == 4
        assert settings.limits.max_tokens == 512


def test_generated_admin_key_is_in_the_keys_file(render: Callable[[str], Rendered]) -> None:
    secret = render("default").get("Secret")
    admin = base64.b64decode(secret["data"]["admin-key"]).decode()
    keys = yaml.safe_load(base64.b64decode(secret["data"]["keys.yaml"]))
    assert len(admin) >= 32
    assert keys == [{"key": admin, "name": "generated-admin", "scope": "admin"}]


def test_cpu_values(render: Callable[[str], Rendered]) -> None:
    r = render("cpu")
    assert "replicas" not in r.get("Deployment")["spec"]  # the HPA owns the count
    hpa = r.get("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    # its metrics: test_helm_autoscaling.py
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME
    pvc = r.get("PersistentVolumeClaim", f"{FULLNAME}-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in r.get("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-models"
    assert r.container()["resources"]["limits"]["cpu"] == "4"


def test_gpu_values(render: Callable[[str], Rendered]) -> None:
    r = render("gpu")
    pod = r.get("Deployment")["spec"]["template"]["spec"]
    assert r.container()["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert r.container()["image"].endswith("modelserve-cuda:0.1.0")
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    models = yaml.safe_load(r.get("ConfigMap")["data"]["models.yaml"])["models"]
    assert models[0]["options"]["gpu_layers"] == -1
    metrics = r.get("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"]  # GPU pods: no CPU target
    assert r.container()["startupProbe"]["failureThreshold"] == 120
    assert "nvidia.com/gpu" in r.notes


def test_full_values(render: Callable[[str], Rendered]) -> None:
    r = render("full")
    pod = r.get("Deployment")["spec"]["template"]["spec"]
    container = r.container()
    assert container["image"] == "modelserve@sha256:" + "ab" * 32
    annotations = r.get("Deployment")["metadata"]["annotations"]
    assert "checkov.io/skip1" not in annotations  # pinned by digest
    assert annotations["checkov.io/skip2"].startswith("CKV_K8S_35=")
    assert r.find("Secret") is None  # existingSecret
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "team-keys"
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "shared-models"
    assert "initContainers" not in pod
    assert r.find("Deployment", f"{FULLNAME}-redis") is None
    base = next(e for e in container["env"] if e["name"] == "MODELSERVE_REDIS_BASE_URL")
    assert base["valueFrom"]["secretKeyRef"] == {"name": "redis-credentials", "key": "redis-url"}
    assert pod["priorityClassName"] == "inference"
    assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
    policies = [d for d in r.docs if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 1
    assert policies[0]["spec"]["ingress"][0]["from"][0]["namespaceSelector"]


def test_service_monitor(render: Callable[[str], Rendered]) -> None:
    """Checked by hand: its CRD is not in the Kubernetes schemas."""
    for case, secret in [("cpu", {"name": FULLNAME, "key": "admin-key"}),
                         ("full", {"name": "team-keys", "key": "metrics-key"})]:
        monitor = render(case).get("ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == NAMESPACE
        assert monitor["spec"]["selector"]["matchLabels"] == \
            render(case).get("Service")["spec"]["selector"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
        assert endpoint["authorization"] == {"type": "Bearer", "credentials": secret}
    assert render("cpu").get("ServiceMonitor")["metadata"]["labels"]["release"] == "prometheus"


def test_refuses_a_server_without_keys(tools: Path, tmp_path: Path) -> None:
    out = helm_render(tools, tmp_path, {"apiKeys": {"generateAdminKey": False}}, check=False)
    assert out.returncode != 0
    assert "configure API keys" in out.stderr
    open_network = helm_render(tools, tmp_path, {"apiKeys": {"generateAdminKey": False},
                                                 "server": {"allowOpenNetwork": True}})
    manifests = json.loads(open_network.stdout)["manifests"]
    assert "MODELSERVE_SECURITY__ALLOW_OPEN_NETWORK\n              value: \"true\"" in \
        manifests["modelserve/templates/deployment.yaml"]


def test_refuses_a_grace_period_shorter_than_the_drain(tools: Path, tmp_path: Path) -> None:
    out = helm_render(tools, tmp_path, {"terminationGracePeriodSeconds": 30}, check=False)
    assert out.returncode != 0
    assert "terminationGracePeriodSeconds (30) must be at least" in out.stderr
    fitted = helm_render(tools, tmp_path, {"terminationGracePeriodSeconds": 30,
                                           "shutdown": {"drainTimeoutSeconds": 15}})
    rendered = Rendered(**json.loads(fitted.stdout))
    assert env_of(rendered.container())["MODELSERVE_SHUTDOWN__DRAIN_TIMEOUT_SECONDS"] == "15"


def test_without_redis_warns(tools: Path, tmp_path: Path) -> None:
    out = helm_render(tools, tmp_path, {"redis": {"builtin": {"enabled": False}}})
    rendered = Rendered(**json.loads(out.stdout))
    names = [e["name"] for e in rendered.container()["env"]]
    assert "MODELSERVE_CACHE__URL" not in names
    assert "MODELSERVE_RATE_LIMITS__STORAGE" not in names
    assert rendered.find("Deployment", f"{FULLNAME}-redis") is None
    assert "WARNING: no Redis is configured" in rendered.notes


def test_every_value_is_documented() -> None:
    """Every value in values.yaml has a `# --` comment above it, or above a block holding it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(-\s+)?([A-Za-z][\w./-]*):\s*(.*)$", line)
        if not match:
            continue
        indent = len(match[1]) + len(match[2] or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j, comment = i - 1, []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.append(lines[j])
            j -= 1
        documented = any("# --" in c for c in comment) or any(d for _, d in stack)
        stack.append((indent, documented))
        if match[4].strip() and not documented:
            undocumented.append(line)
    assert undocumented == []
    assert len(stack) > 0
