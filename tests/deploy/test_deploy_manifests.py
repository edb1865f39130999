"""manifests/: the chart's default render as plain, kustomize-ready YAML, and current."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from deploy_helpers import MANIFESTS, one, render_manifests, validate_objects


def _objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def test_manifests_are_current() -> None:
    stale = render_manifests.stale_files(MANIFESTS)
    assert not stale, (
        f"manifests/ differs from the chart in {stale}: "
        "run .venv/bin/python scripts/render-manifests.py"
    )


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert resources == [
        "crd.yaml", "namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "configmap.yaml",
        "deployment.yaml", "service.yaml", "pdb.yaml",
    ]
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == files
    namespace = kustomization["namespace"]
    for obj in _objects():
        if obj["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                           "CustomResourceDefinition"):
            continue
        assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    assert one(_objects(), "Namespace")["metadata"]["name"] == namespace


def test_manifests_are_valid_kubernetes() -> None:
    objects = _objects()
    checked = validate_objects(objects)
    assert len(checked) == 2 * len(objects)  # every object, for both Kubernetes versions
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert "helm.sh/chart" not in labels and "app.kubernetes.io/managed-by" not in labels


def test_manifests_hold_no_secret() -> None:
    objects = _objects()
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = {e["name"]: e for e in one(objects, "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert env["BKCMDB_CMDB__DSN"]["valueFrom"]["secretKeyRef"] == {
        "name": "bkcmdb-synchronizer-cmdb", "key": "dsn"}


def test_validation_catches_a_broken_object() -> None:
    """The validator is no rubber stamp: a misspelt field or a wrong type fails."""
    deployment = one(_objects(), "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    for broken in (typo, wrong_type):
        with pytest.raises(pytest.fail.Exception, match="is invalid for Kubernetes"):
            validate_objects([broken])
