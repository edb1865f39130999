"""CustomResourceDefinitions: installing one makes its resource served; SyncCluster's CRD.

Why it matters to simulate: the product finds clusters to sync in `SyncCluster` custom
resources (CONTRACT.md "Cluster registries") and watches them with kopf, which discovers
resources through `/apis`, watches `customresourcedefinitions` to notice new ones, and
relies on apiserver's custom resource strategy (generation, the status subresource,
finalizers, pruning). Installing a CRD here does what apiextensions-apiserver does:

- validate the definition (name `<plural>.<group>`, one storage version, a scope);
- store it in `customresourcedefinitions.apiextensions.k8s.io` with the status a real
  server settles on (`NamesAccepted` and `Established` True, `acceptedNames`,
  `storedVersions`), so clients that wait for "established" proceed;
- add its resource to the cluster's registry: served at `/apis/<group>/<version>`,
  listed by discovery (with `<plural>/status` when the status subresource is on), with
  generation tracking, no unconditional update, and the version's schema for pruning.

Only the storage version is served (no conversion between versions). Deleting a CRD
deletes its objects first (DELETED events), ends their watches and stops serving them.
"""

from __future__ import annotations

import copy
from typing import Any

from .cluster import SimCluster
from .resources import ResourceSpec
from .wire import SimError

CRD_RESOURCE = "customresourcedefinitions.apiextensions.k8s.io"
GROUP = "bkcmdb.bkbcs.tencent.com"

_SECRET_REF = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string"}, "key": {"type": "string"}}}

SYNC_CLUSTER_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"syncclusters.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "syncclusters", "singular": "synccluster", "kind": "SyncCluster",
                  "listKind": "SyncClusterList", "shortNames": ["sc"],
                  "categories": ["bkcmdb"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterId"},
                {"name": "Biz", "type": "integer", "jsonPath": ".spec.bizId"},
                {"name": "State", "type": "string", "jsonPath": ".status.state"},
                {"name": "Owner", "type": "string", "jsonPath": ".status.owner"}],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": {"type": "object", "properties": {
                        "clusterId": {"type": "string"},
                        "bizId": {"type": "integer"},
                        "server": {"type": "string"},
                        "kubeconfigSecret": _SECRET_REF,
                        "tokenSecret": _SECRET_REF,
                        "insecureSkipTLSVerify": {"type": "boolean"},
                        "kinds": {"type": "array", "items": {
                            "type": "string",
                            "enum": ["pods", "nodes", "namespaces", "workloads"]}},
                        "paused": {"type": "boolean"}}},
                    "status": {"type": "object", "properties": {
                        "owner": {"type": "string"},
                        "state": {"type": "string",
                                  "enum": ["Pending", "Running", "Paused", "Error"]},
                        "lastFullSync": {"type": "string"},
                        "pods": {"type": "integer"},
                        "observedGeneration": {"type": "integer"},
                        "conditions": {"type": "array", "items": {
                            "type": "object", "required": ["type", "status"],
                            "properties": {
                                "type": {"type": "string"}, "status": {"type": "string"},
                                "reason": {"type": "string"}, "message": {"type": "string"},
                                "lastTransitionTime": {"type": "string"}}}}}}}}},
        }],
    },
}
"""The SyncCluster CRD as the contract describes it. `bizId` is not `required` in the
schema: a SyncCluster without one must reach the product, which reports it (TEST-MATRIX
row 42) instead of apiserver refusing it. Unknown fields are pruned, as in a real cluster."""

BUILTIN_CRDS: dict[str, dict[str, Any]] = {"syncclusters": SYNC_CLUSTER_CRD}


def spec_of(crd: dict[str, Any]) -> ResourceSpec:
    """The served resource a CRD defines (its storage version); 422 when malformed."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    problems = [f"spec.{field}: Required value" for field, value in
                (("group", group), ("names.plural", plural), ("names.kind", kind)) if not value]
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append('spec.scope: Unsupported value: supported values: "Cluster", '
                        '"Namespaced"')
    storage = [v for v in spec.get("versions") or () if v.get("storage")]
    if len(storage) != 1:
        problems.append("spec.versions: Invalid value: must have exactly one version "
                        "marked as storage version")
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        problems.append(f"metadata.name: Invalid value: {name!r}: must be spec.names.plural"
                        "+\".\"+spec.group")
    if problems:
        raise SimError(422, f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is '
                       "invalid: " + ", ".join(problems))
    version = storage[0]
    schema = (version.get("schema") or {}).get("openAPIV3Schema") or {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return ResourceSpec(
        group=group, version=version["name"], plural=plural, kind=kind,
        namespaced=spec["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=("status",) if "status" in (version.get("subresources") or {}) else (),
        generation=True, unconditional_update=False, schema=schema)


def _established(crd: dict[str, Any], now: str) -> dict[str, Any]:
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    return {"acceptedNames": names,
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted",
                 "lastTransitionTime": now}]}


def install_crd(cluster: SimCluster, crd: dict[str, Any]) -> dict[str, Any]:
    """Create (or replace the spec of) a CRD and serve its resource; returns the stored
    CRD. A 422 SimError for a malformed definition."""
    crd = copy.deepcopy(crd)
    resource = spec_of(crd)
    now = cluster.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    name = crd["metadata"]["name"]
    existing = cluster.get(None, name, resource=CRD_RESOURCE)
    if existing is None:
        crd["status"] = _established(crd, now)
        stored = cluster.create(crd, resource=CRD_RESOURCE)
    else:
        def replace(obj: dict[str, Any]) -> None:
            obj["spec"] = crd["spec"]
            obj["status"] = _established(crd, now)
        stored = cluster.update(None, name, replace, resource=CRD_RESOURCE)
    cluster.resources.add(resource)
    cluster.refresh_tables()
    return stored


def uninstall_crd(cluster: SimCluster, name: str) -> dict[str, Any]:
    """Delete a CRD: its objects (DELETED events), their watches, then its resource."""
    crd = cluster.get(None, name, resource=CRD_RESOURCE)
    if crd is None:
        raise cluster.table(CRD_RESOURCE).missing(name)
    resource = spec_of(crd)
    if resource.id in cluster.resources:
        table = cluster.table(resource.id)
        for key in list(table.order):
            ns, _, obj_name = key.rpartition("/")
            cluster.force_remove(ns or None, obj_name, resource=resource.id)
        cluster.end_streams(resource=resource.id)
        cluster.resources.remove(resource.id)
        cluster.drop_table(resource.id)
        cluster.refresh_tables()
    return cluster.delete(None, name, resource=CRD_RESOURCE)
