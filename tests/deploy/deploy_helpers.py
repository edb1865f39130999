"""Helpers of the deployment tests: Helm rendering, Kubernetes schema validation, PromQL.

Rendering goes through scripts/render-manifests.py (Helm's Go SDK via helm-python-sdk), so
the tests and the generated manifests/ use one engine. Objects are validated with
kubernetes-validate against the Kubernetes OpenAPI schemas in strict mode (unknown fields
are errors) for the oldest version the chart supports and a recent one.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import promql_parser
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bkcmdb-synchronizer"
MANIFESTS = ROOT / "manifests"
# Chart.yaml says kubeVersion >=1.25; 1.35 stands for current clusters.
KUBE_VERSIONS = ("1.25", "1.35")


def _load_render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_manifests", ROOT / "scripts" / "render-manifests.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_manifests = _load_render_module()


def render(
    values: Mapping[str, Any] | None = None, namespace: str = "sync"
) -> list[dict[str, Any]]:
    """The chart rendered with `values` (release `bkcmdb-synchronizer`), as objects."""
    return render_manifests.render_objects(values, namespace=namespace)


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind."""
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


# Minimal structural schemas of the CRD-typed objects the chart renders (the Kubernetes
# schemas do not cover them): the fields the chart sets, nothing unknown.
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
CRD_SCHEMAS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {
                        "type": "object", "additionalProperties": False,
                        "required": ["matchLabels"],
                        "properties": {"matchLabels": {
                            "type": "object", "minProperties": 1,
                            "additionalProperties": {"type": "string"}}},
                    },
                    "namespaceSelector": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"matchNames": {"type": "array",
                                                      "items": {"type": "string"}}},
                    },
                    "endpoints": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string",
                                             "pattern": "^([0-9]+(ms|s|m|h))+$"},
                                "scrapeTimeout": {"type": "string",
                                                  "pattern": "^([0-9]+(ms|s|m|h))+$"},
                                "relabelings": {"type": "array"},
                                "metricRelabelings": {"type": "array"},
                            },
                        },
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _METADATA,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["groups"],
                "properties": {"groups": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "additionalProperties": False,
                                "required": ["alert", "expr"],
                                "properties": {
                                    "alert": {"type": "string",
                                              "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
                                    "expr": {"type": "string", "minLength": 1},
                                    "for": {"type": "string",
                                            "pattern": "^([0-9]+(ms|s|m|h|d))+$"},
                                    "labels": {"type": "object",
                                               "additionalProperties": {"type": "string"}},
                                    "annotations": {"type": "object",
                                                    "additionalProperties": {"type": "string"}},
                                },
                            }},
                        },
                    },
                }},
            },
        },
    },
}


def validate_objects(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Validate every object; returns what was checked, e.g. `Deployment@1.25`.

    Raises on the first invalid object. Kinds the Kubernetes schemas lack must have a
    structural schema in `CRD_SCHEMAS`; an object of any other unknown kind fails.
    """
    checked: list[str] = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        crd = CRD_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if crd is not None:
            jsonschema.validate(obj, crd)
            checked.append(f"{obj['kind']}@structure")
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as exc:
                path = "/".join(str(p) for p in exc.absolute_path)
                pytest.fail(f"{name} is invalid for Kubernetes {version} at {path}: {exc.message}")
            checked.append(f"{obj['kind']}@{version}")
    return checked


# --- PromQL ----------------------------------------------------------------------------

_GRAFANA_RANGE_VARS = re.compile(r"\$\{?__(rate_interval|interval|range)\b\}?")
_GRAFANA_VARS = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects, from the parsed AST (Grafana variables allowed)."""
    expr = _GRAFANA_RANGE_VARS.sub("5m", expr)
    expr = _GRAFANA_VARS.sub("x", expr)
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def promtool() -> str:
    """Path of promtool; when missing the test fails (scripts/ensure-services.sh installs it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install the Debian package `prometheus` "
                    "(scripts/ensure-services.sh does)")
    return path
