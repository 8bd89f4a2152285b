"""The chart scales on what inference is bound by: requests in flight and queued, as Pods
metrics of its HPA (through prometheus-adapter) or as Prometheus triggers of a KEDA
ScaledObject; and a pod gets no traffic before its models are loaded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.config import ModelSpec
from modelserve.registry import ModelRegistry, ModelState
from tests.deploy.conftest import CHART, DEPLOY
from tests.deploy.helm_chart import CASES, FULLNAME, NAMESPACE, Rendered, helm_render

ADAPTER_VALUES = DEPLOY / "helm" / "prometheus-adapter-values.yaml"
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]
IN_FLIGHT = DEFAULTS["inFlightRequests"]["metricName"]
WAITING = DEFAULTS["waitingSequences"]["metricName"]
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"


def render_values(tools: Path, tmp_path: Path, values: dict[str, Any]) -> Rendered:
    out = helm_render(tools, tmp_path, values)
    return Rendered(**json.loads(out.stdout))


def refusal(tools: Path, tmp_path: Path, values: dict[str, Any]) -> str:
    """The error a render that must fail gives."""
    out = helm_render(tools, tmp_path, values, check=False)
    assert out.returncode != 0, "rendered, but should have been refused"
    return out.stderr


# -- HPA --------------------------------------------------------------------------------------


def test_hpa_scales_on_requests_in_flight_and_queued(render: Callable[[str], Rendered]) -> None:
    """The CPU example scales on the work a pod has, not on its CPU."""
    hpa = render("cpu").get("HorizontalPodAutoscaler")
    targets = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["spec"]["metrics"]
               if m["type"] == "Pods"}
    assert targets == {IN_FLIGHT: {"type": "AverageValue", "averageValue": "12"},
                       WAITING: {"type": "AverageValue", "averageValue": "4"}}
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods", "Pods"]  # no CPU target
    assert "prometheus-adapter-values.yaml" in render("cpu").notes


def test_autoscaling_defaults_keep_the_cpu_target(tools: Path, tmp_path: Path) -> None:
    """Backwards compatible: turning autoscaling on alone still scales on CPU only."""
    hpa = render_values(tools, tmp_path, {"autoscaling": {"enabled": True}}).get(
        "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_prometheus_adapter_rules_serve_the_hpa_metrics(render: Callable[[str], Rendered]) -> None:
    """deploy/helm/prometheus-adapter-values.yaml exposes, as Pods metrics, exactly the names
    the chart's HPA asks for, per pod and namespace."""
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert adapter["prometheus"]["url"].startswith("http")
    rules = {rule["name"]["as"]: rule for rule in adapter["rules"]["custom"]}
    assert set(rules) == {IN_FLIGHT, WAITING}
    hpa = render("cpu").get("HorizontalPodAutoscaler")
    assert {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]
            if m["type"] == "Pods"} <= set(rules)
    for name, rule in rules.items():
        assert rule["seriesQuery"].startswith(name + "{")
        assert re.fullmatch(rule["name"]["matches"], name)
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                                  "pod": {"resource": "pod"}}
        query = rule["metricsQuery"]
        assert "<<.Series>>{<<.LabelMatchers>>}" in query
        assert query.endswith("by (<<.GroupBy>>)")
    # The scrape that reads the gauge is a request in flight itself: an idle pod reads 0.
    assert "clamp_min(<<.Series>>{<<.LabelMatchers>>} - 1, 0)" in rules[IN_FLIGHT]["metricsQuery"]


# -- KEDA -------------------------------------------------------------------------------------


def pod_pattern(query: str) -> str:
    match = re.search(r'namespace="([^"]+)",pod=~"([^"]+)"', query)
    assert match, query
    assert match[1] == NAMESPACE
    return match[2]


def test_keda_scaled_object(render: Callable[[str], Rendered]) -> None:
    """Checked by hand: the CRD is not in the Kubernetes schemas. KEDA makes its own HPA, so
    the chart renders none and leaves the replica count to it."""
    r = render("keda")
    assert r.find("HorizontalPodAutoscaler") is None
    assert "replicas" not in r.get("Deployment")["spec"]
    scaled = r.get("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["namespace"] == NAMESPACE
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": FULLNAME}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 10)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == DEFAULTS["behavior"]
    triggers = spec["triggers"]
    assert [t["type"] for t in triggers] == ["prometheus", "prometheus"]
    for trigger in triggers:
        # The CRD's trigger metadata is a map of strings.
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger
        assert trigger["metadata"]["serverAddress"] == PROMETHEUS
    in_flight, waiting = (t["metadata"] for t in triggers)
    # One sum over the server pods, which KEDA's HPA averages over the replicas: the
    # thresholds are the per-pod averageValues of the CPU example.
    assert in_flight["query"].startswith(f"sum(clamp_min({IN_FLIGHT}{{")
    assert in_flight["query"].endswith("} - 1, 0))")  # less each pod's own scrape
    assert in_flight["threshold"] == "12"
    assert waiting["query"].startswith(f"sum({WAITING}{{")
    assert waiting["threshold"] == "4"
    for query in (in_flight["query"], waiting["query"]):
        pods = pod_pattern(query)
        assert re.fullmatch(pods, f"{FULLNAME}-7d9c8b6f5d-x2k4q")
        assert not re.fullmatch(pods, f"{FULLNAME}-redis-5c6d7f8b9-abcde")
    assert "KEDA" in r.notes and PROMETHEUS in r.notes


def test_keda_cpu_trigger_alone_needs_no_prometheus(tools: Path, tmp_path: Path) -> None:
    r = render_values(tools, tmp_path, {"autoscaling": {"keda": {"enabled": True}}})
    assert r.get("ScaledObject")["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}]
    assert r.find("HorizontalPodAutoscaler") is None


@pytest.mark.parametrize(("values", "message"), [
    ({"enabled": True, "keda": {"enabled": True, "serverAddress": PROMETHEUS}},
     "autoscaling.enabled and autoscaling.keda.enabled are exclusive: KEDA makes its own HPA"),
    ({"keda": {"enabled": True}, "inFlightRequests": {"enabled": True}},
     "autoscaling.keda.serverAddress (the Prometheus KEDA queries) is required"),
    ({"enabled": True, "targetCPUUtilizationPercentage": None},
     "autoscaling needs inFlightRequests.enabled, waitingSequences.enabled or "
     "targetCPUUtilizationPercentage"),
    ({"keda": {"enabled": True}, "targetCPUUtilizationPercentage": None},
     "autoscaling needs inFlightRequests.enabled"),
], ids=["hpa-and-keda", "keda-without-prometheus", "hpa-without-signal", "keda-without-signal"])
def test_refuses_contradictory_autoscaling(tools: Path, tmp_path: Path, values: dict[str, Any],
                                           message: str) -> None:
    assert message in refusal(tools, tmp_path, {"autoscaling": values})


# -- readiness --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_no_traffic_before_the_models_are_loaded(render: Callable[[str], Rendered],
                                                 case: str) -> None:
    """Readiness is /ready, which the server answers 503 until every start-up model of the
    chart's models YAML is loaded: a new pod, scaled out or rolled, joins the Service only
    with its weights in memory."""
    r = render(case)
    probe = r.container()["readinessProbe"]
    assert probe["httpGet"] == {"path": "/ready", "port": "http"}
    specs = [ModelSpec.model_validate(m)
             for m in yaml.safe_load(r.get("ConfigMap")["data"]["models.yaml"])["models"]]
    registry = ModelRegistry(specs)
    assert registry.required == {s.name for s in specs}  # every model loads at start-up
    assert registry.readiness() == (False, {"status": "loading"})
    registry.started = True
    for entry in registry.entries.values():
        assert registry.readiness()[0] is False
        entry.set_state(ModelState.READY)
    assert registry.readiness() == (True, {})
