"""Render and lint a Helm chart with helm-python-sdk (run by the deploy tools' Python).

    python helm_render.py CHART RELEASE NAMESPACE KUBE_VERSION [VALUES.yaml ...]

Prints one JSON object: {"manifests": {template: text}, "lint": {...}}. Values files are
merged left to right, like `helm template -f a.yaml -f b.yaml`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import helm_python as helm
import yaml


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def main() -> None:
    chart, release, namespace, kube_version, *files = sys.argv[1:]
    values: dict[str, Any] = {}
    for path in files:
        with open(path) as fh:
            values = merge(values, yaml.safe_load(fh) or {})
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name=release, namespace=namespace, is_install=True)
    report = helm.lint(chart, values, strict=True, namespace=namespace,
                       kube_version=kube_version)
    json.dump({"manifests": manifests, "lint": report}, sys.stdout)


if __name__ == "__main__":
    main()
