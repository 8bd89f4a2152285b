"""The Helm chart linted by Helm's own library for the default, CPU and GPU values, a case
with every option on and the CPU values on KEDA, and every rendered manifest checked against the
Kubernetes 1.30 schemas (kubernetes-validate, strict) and by checkov."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import checkov_env
from tests.deploy.helm_chart import (
    CASES,
    CRD_KINDS,
    KUBE_VERSION,
    Rendered,
    write_manifests,
)

# -- Helm lint and Kubernetes schemas --------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_lint_has_no_errors_or_warnings(render: Callable[[str], Rendered], case: str) -> None:
    report = render(case).lint
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity: 1 info (e.g. "icon is recommended"), 2 warning, 3 error; strict lint.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("case", CASES)
def test_manifests_match_kubernetes_schemas(render: Callable[[str], Rendered], tools: Path,
                                            tmp_path: Path, case: str) -> None:
    paths = write_manifests(render(case), tmp_path, skip_kinds=CRD_KINDS)
    assert len(paths) >= 7
    out = subprocess.run([str(tools / "kubernetes-validate"), "-k", KUBE_VERSION, "--strict",
                          *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" passed for resource ") == len(paths), out.stdout


def test_schema_check_rejects_a_broken_manifest(render: Callable[[str], Rendered],
                                                tools: Path, tmp_path: Path) -> None:
    """The schema check has teeth: a misspelled field and a wrong type both fail it."""
    original = render("default").get("Deployment")
    typo = json.loads(json.dumps(original))
    typo["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    wrong_type = json.loads(json.dumps(original))
    wrong_type["spec"]["replicas"] = "two"
    for broken, expected in [(typo, "livenessprobe"), (wrong_type, "spec.replicas")]:
        path = tmp_path / "broken.yaml"
        path.write_text(yaml.safe_dump(broken))
        out = subprocess.run([str(tools / "kubernetes-validate"), "-k", KUBE_VERSION,
                              "--strict", str(path)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode != 0
        assert expected in out.stdout + out.stderr


@pytest.mark.parametrize("case", CASES)
def test_checkov_passes_on_rendered_manifests(render: Callable[[str], Rendered], tools: Path,
                                              tmp_path: Path, case: str) -> None:
    write_manifests(render(case), tmp_path, skip_kinds=set())
    out = subprocess.run([str(tools / "checkov"), "-d", str(tmp_path), "--framework",
                          "kubernetes", "--skip-download", "-o", "json"],
                         capture_output=True, text=True, timeout=300, env=checkov_env())
    report = json.loads(out.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 50
    # Each skipped check carries its reason (a `checkov.io/skip` annotation): the digest pin
    # (the `full` case pins by digest) and, with a Redis URL from a Secret, env secrets.
    for check in results["skipped_checks"]:
        assert check["check_id"] in {"CKV_K8S_43", "CKV_K8S_35"}
        assert len(check["check_result"]["suppress_comment"]) > 20
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert ("CKV_K8S_43" in skipped) == (case != "full")
    assert ("CKV_K8S_35" in skipped) == (case == "full")
    assert out.returncode == 0


