"""A SyncCluster resource read as a cluster spec: the user's `spec`, checked, or held.

Pure functions, so the rules are tested without a cluster. A SyncCluster always yields a
spec when its cluster id can be told (`spec.clusterId`, default `metadata.name`): a valid
one runs; a paused one is held (`hold = "Paused: ..."`); one whose spec is unusable is held
too (`hold = "InvalidSpec: <every problem>"`). Holding rather than dropping is the point:
a held cluster is still declared, so editing a SyncCluster into a broken state (or pausing
it) stops its cluster but never makes it look removed — its rows are not soft-deleted
under `sync.on_cluster_removed: delete`, and fixing the spec resumes it.

`hold` is "<Reason>: <message>"; the reason is what the status's `Ready` condition shows.

Credentials are references: `tokenSecret` → `SecretRef("secret", "<ns>/<name>#<key>")`
(key default `token`), `kubeconfigSecret` → the same with key default `kubeconfig`, both
in the SyncCluster's own namespace; whoever owns the cluster resolves them through the
home cluster (`home.HomeCluster.secret`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from synchronizer.settings import ALL_KINDS

from .spec import ClusterSpec, Origin, SecretRef

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""Cluster ids as the static config accepts them."""
ID_LIMIT = 128
"""The CMDB's cluster_id width."""
PAUSED = "Paused"
INVALID = "InvalidSpec"


def source_of(obj: Mapping[str, Any]) -> str:
    """`namespace/name` of a resource."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def cluster_id_of(obj: Mapping[str, Any]) -> str:
    """The cluster a SyncCluster declares: `spec.clusterId`, else its name."""
    spec = obj.get("spec") or {}
    value = spec.get("clusterId")
    if isinstance(value, str) and value:
        return value
    return str((obj.get("metadata") or {}).get("name") or "")


def _secret_ref(spec: Mapping[str, Any], field: str, namespace: str, default_key: str,
                problems: list[str]) -> SecretRef | None:
    value = spec.get(field)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str) \
            or not value.get("name"):
        problems.append(f"spec.{field}.name is required")
        return None
    key = value.get("key") or default_key
    if not isinstance(key, str):
        problems.append(f"spec.{field}.key must be a string")
        return None
    return SecretRef("secret", f"{namespace}/{value['name']}#{key}")


def problems_of(obj: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a SyncCluster's spec, in the order a reader fixes them."""
    return _parse(obj)[1]


def _parse(obj: Mapping[str, Any]) -> tuple[ClusterSpec, list[str]]:
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    raw = obj.get("spec")
    spec: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        problems.append("spec is required")
    cluster_id = cluster_id_of(obj)
    if not ID_PATTERN.match(cluster_id) or len(cluster_id) > ID_LIMIT:
        problems.append(f"spec.clusterId {cluster_id!r} is not a cluster id (letters, digits,"
                        f" '.', '_', '-'; at most {ID_LIMIT} characters)")
    biz = spec.get("bizId")
    if biz is None:
        problems.append("spec.bizId is required")
    elif isinstance(biz, bool) or not isinstance(biz, int) or biz < 0:
        problems.append(f"spec.bizId must be a whole number >= 0, not {biz!r}")
        biz = None
    server = spec.get("server")
    if server is not None and (not isinstance(server, str)
                               or urlsplit(server).scheme not in ("http", "https")):
        problems.append(f"spec.server {server!r} is not an http(s) URL")
        server = None
    token = _secret_ref(spec, "tokenSecret", namespace, "token", problems)
    kubeconfig = _secret_ref(spec, "kubeconfigSecret", namespace, "kubeconfig", problems)
    if bool(spec.get("server")) == bool(spec.get("kubeconfigSecret")):
        problems.append("give exactly one of spec.server or spec.kubeconfigSecret")
    if token is not None and spec.get("kubeconfigSecret"):
        problems.append("spec.tokenSecret goes with spec.server, not spec.kubeconfigSecret")
    kinds = spec.get("kinds")
    if kinds is not None:
        bad = [k for k in kinds if k not in ALL_KINDS] if isinstance(kinds, list) else [kinds]
        if bad or not kinds:
            problems.append(f"spec.kinds must be some of {', '.join(ALL_KINDS)}")
            kinds = None
    insecure = spec.get("insecureSkipTLSVerify", False)
    if not isinstance(insecure, bool):
        problems.append("spec.insecureSkipTLSVerify must be true or false")
        insecure = False
    parsed = ClusterSpec(
        id=cluster_id, biz_id=int(biz or 0), origin=Origin.CRD, server=server or None,
        token=token if server else None, insecure=insecure, kubeconfig_ref=kubeconfig,
        kinds=tuple(dict.fromkeys(kinds)) if kinds else None, source=source_of(obj))
    return parsed, problems


def spec_of(obj: Mapping[str, Any]) -> ClusterSpec:
    """The cluster spec a SyncCluster declares, held when paused or unusable."""
    parsed, problems = _parse(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    hold = None
    if problems:
        hold = f"{INVALID}: {'; '.join(problems)}"
    elif spec.get("paused") is True:
        hold = f"{PAUSED}: spec.paused is true"
    return parsed if hold is None else replace(parsed, hold=hold)


def deleting(obj: Mapping[str, Any]) -> bool:
    """True once the resource is being deleted (its finalizer still holds it)."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def hold_reason(hold: str) -> tuple[str, str]:
    """("Paused", "spec.paused is true") from a spec's `hold`."""
    reason, _, message = hold.partition(": ")
    return reason, message
