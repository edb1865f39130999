"""Pod → record: the only place that knows which Pod fields the CMDB stores.

Stored: namespace, name, the cluster's biz_id, set and module (from two annotations, both
or neither: `bkbcs`/`bkbcs`), node, host and pod IPs, phase, labels, containers (name,
image, container id) and the workload that owns the Pod. Volatile parts of a Pod
(managedFields, conditions, restart counts, timestamps) are not projected, so they never
cause a write.

The owning workload comes from the Pod alone (DESIGN §7): its controlling owner reference
names a ReplicaSet `<deployment>-<hash>` whose Pods carry `pod-template-hash=<hash>`, so a
Deployment is known without watching ReplicaSets; any other controller (StatefulSet,
DaemonSet, Job, a ReplicaSet of its own, a custom controller) is the workload itself.

Two decoders share one field assembly (`_assemble`). The fast one is msgspec decoding the
JSON straight into the structs below and skipping every other field (managedFields,
volumes, probes, conditions: most of a 5 KB Pod) without creating a Python object for
it; that is what makes a 100k-pod list and a 5,000 events/s watch fit in one core
(docs/benchmarks.md). Anything the structs do not accept (a null, a number where a string
belongs, a missing uid) falls back to the validating dict path, so odd Pods get the same
record or the same one-line reason; a differential test holds the two together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import orjson

from reconciler import Record

from .descriptor import (
    TRUNCATED,
    BadObject,
    Column,
    ColumnType,
    Kind,
    Projection,
    Resource,
    fit,
    labels_json,
    record,
    version_of,
)

SET_ANNOTATION = "set.bkcmdb.bkbcs.tencent.com"
MODULE_ANNOTATION = "module.bkcmdb.bkbcs.tencent.com"
DEFAULT_SET = "bkbcs"
DEFAULT_MODULE = "bkbcs"
TEMPLATE_HASH = "pod-template-hash"

POD = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)

COLUMNS: tuple[Column, ...] = (
    Column("namespace", limit=253),
    Column("name", limit=253),
    Column("biz_id", ColumnType.INT, default=0),
    Column("set_name", limit=255),
    Column("module_name", limit=255),
    Column("node_name", limit=253),
    Column("host_ip", limit=64),
    Column("pod_ip", limit=64),
    Column("phase", limit=32),
    Column("labels", ColumnType.JSON, default="{}"),
    Column("containers", ColumnType.JSON, default="[]"),
    Column("workload_kind", limit=64),
    Column("workload_name", limit=253),
)
"""The stored, checksummed fields of a Pod, in table order (after cluster_id and uid)."""

STORED = (*COLUMNS, TRUNCATED)
LIMITS: Mapping[str, int] = {c.name: c.limit for c in COLUMNS if c.limit is not None} | {
    "truncated": 255}


def workload_of(owners: Sequence[tuple[str, str, bool]], labels: Mapping[str, Any]
                ) -> tuple[str, str]:
    """(kind, name) of the workload owning a Pod, from (kind, name, controller) owners."""
    for kind, name, controller in owners:
        if not controller:
            continue
        if kind == "ReplicaSet":
            template = labels.get(TEMPLATE_HASH)
            if isinstance(template, str) and template and name.endswith("-" + template):
                return "Deployment", name[: -len(template) - 1]
        return kind, name
    return "", ""


def _str(value: Any, what: str, *, required: bool = False, uid: str | None = None) -> str:
    if value is None or value == "":
        if required:
            raise BadObject(f"missing {what}", uid=uid)
        return ""
    if not isinstance(value, str):
        raise BadObject(f"{what} is {type(value).__name__}, expected string", uid=uid)
    return value


def _mapping(value: Any, what: str, uid: str | None = None) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadObject(f"{what} is {type(value).__name__}, expected object", uid=uid)
    return value


def _containers(spec: Mapping[str, Any], status: Mapping[str, Any], uid: str
                ) -> list[dict[str, str]]:
    raw = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    if not isinstance(raw, list) or not isinstance(statuses, list):
        raise BadObject("containers is not a list", uid=uid)
    ids = {
        s.get("name"): s.get("containerID") or ""
        for s in statuses
        if isinstance(s, dict) and isinstance(s.get("name"), str) and s.get("name")
    }
    out = []
    for c in raw:
        if not isinstance(c, dict):
            raise BadObject("container is not an object", uid=uid)
        name = _str(c.get("name"), "container name", uid=uid)
        out.append(
            {"name": name, "image": _str(c.get("image"), "container image", uid=uid),
             "container_id": _str(ids.get(name), "containerID", uid=uid)}
        )
    return out


def _owners(meta: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    refs = meta.get("ownerReferences") or []
    if not isinstance(refs, list):
        return []
    return [(r.get("kind"), r.get("name"), r.get("controller") is True) for r in refs
            if isinstance(r, dict) and isinstance(r.get("kind"), str)
            and isinstance(r.get("name"), str)]


def _assemble(
    *, namespace: str, name: str, biz_id: int, annotations: Mapping[str, Any],
    node_name: str, host_ip: str, pod_ip: str, phase: str, labels: Mapping[str, Any],
    containers: list[dict[str, str]], owners: Sequence[tuple[str, str, bool]],
) -> dict[str, Any]:
    """The stored fields from already-typed parts: the one place both decoders meet."""
    set_name = annotations.get(SET_ANNOTATION)
    module_name = annotations.get(MODULE_ANNOTATION)
    both = isinstance(set_name, str) and set_name and isinstance(module_name, str) and module_name
    if not both:
        set_name, module_name = DEFAULT_SET, DEFAULT_MODULE
    workload_kind, workload_name = workload_of(owners, labels)
    fields: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "biz_id": biz_id,
        "set_name": set_name,
        "module_name": module_name,
        "node_name": node_name,
        "host_ip": host_ip,
        "pod_ip": pod_ip,
        "phase": phase,
        "labels": labels_json(labels),
        "containers": orjson.dumps(containers).decode(),
        "workload_kind": workload_kind,
        "workload_name": workload_name,
    }
    return fit(fields, LIMITS)


def pod_fields(pod: Any, *, biz_id: int) -> tuple[str, int, dict[str, Any]]:
    """Return (uid, resourceVersion, stored fields) of a Pod dict; raise `BadObject`."""
    if not isinstance(pod, dict):
        raise BadObject("object is not a JSON object")
    meta = _mapping(pod.get("metadata"), "metadata")
    uid = _str(meta.get("uid"), "metadata.uid", required=True)
    namespace = _str(meta.get("namespace"), "metadata.namespace", required=True, uid=uid)
    name = _str(meta.get("name"), "metadata.name", required=True, uid=uid)
    version = version_of(meta.get("resourceVersion"), uid)
    annotations = _mapping(meta.get("annotations"), "metadata.annotations", uid)
    labels = _mapping(meta.get("labels"), "metadata.labels", uid)
    spec = _mapping(pod.get("spec"), "spec", uid)
    status = _mapping(pod.get("status"), "status", uid)
    fields = _assemble(
        namespace=namespace, name=name, biz_id=biz_id, annotations=annotations,
        node_name=_str(spec.get("nodeName"), "spec.nodeName", uid=uid),
        host_ip=_str(status.get("hostIP"), "status.hostIP", uid=uid),
        pod_ip=_str(status.get("podIP"), "status.podIP", uid=uid),
        phase=_str(status.get("phase"), "status.phase", uid=uid),
        labels=labels, containers=_containers(spec, status, uid), owners=_owners(meta),
    )
    return uid, version, fields


# -- the fast path: typed decoding of the stored fields only ---------------------------------


class _Owner(msgspec.Struct):
    kind: str = ""
    name: str = ""
    controller: bool = False


class _Meta(msgspec.Struct):
    uid: str = ""
    namespace: str = ""
    name: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    ownerReferences: list[_Owner] = []


class _Container(msgspec.Struct):
    name: str = ""
    image: str = ""


class _Spec(msgspec.Struct):
    nodeName: str = ""
    containers: list[_Container] = []


class _ContainerStatus(msgspec.Struct):
    name: str = ""
    containerID: str = ""


class _Status(msgspec.Struct):
    phase: str = ""
    hostIP: str = ""
    podIP: str = ""
    containerStatuses: list[_ContainerStatus] = []


class _Pod(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: _Spec = msgspec.field(default_factory=_Spec)
    status: _Status = msgspec.field(default_factory=_Status)


_POD = msgspec.json.Decoder(_Pod)


def _fast(raw: bytes, ctx: Projection) -> Record | None:
    """The record, or None when the typed path declines (the dict path then decides)."""
    try:
        pod = _POD.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    meta, spec, status = pod.metadata, pod.spec, pod.status
    if not (meta.uid and meta.namespace and meta.name and meta.resourceVersion.isdigit()):
        return None
    ids = {s.name: s.containerID for s in status.containerStatuses if s.name}
    fields = _assemble(
        namespace=meta.namespace, name=meta.name, biz_id=ctx.biz_id,
        annotations=meta.annotations, node_name=spec.nodeName, host_ip=status.hostIP,
        pod_ip=status.podIP, phase=status.phase, labels=meta.labels,
        containers=[{"name": c.name, "image": c.image,
                     "container_id": ids.get(c.name, "")} for c in spec.containers],
        owners=[(o.kind, o.name, o.controller) for o in meta.ownerReferences],
    )
    return record(meta.uid, int(meta.resourceVersion), fields, ctx, STORED)


def project_pod(raw: bytes, ctx: Projection) -> Record:
    """Project a Pod's JSON bytes into a record; raise `BadObject` (one line) when unusable.

    Same result as `project_pod_dict(orjson.loads(raw), ...)`, several times faster for
    the Pods real API servers send (a differential test holds the two paths together).
    """
    fast = _fast(raw, ctx)
    if fast is not None:
        return fast
    try:
        pod = orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError:
        raise BadObject("object is not valid JSON") from None
    return project_pod_dict(pod, ctx)


def project_pod_dict(pod: Any, ctx: Projection) -> Record:
    """Project a Pod dict (the validating path)."""
    uid, version, fields = pod_fields(pod, biz_id=ctx.biz_id)
    return record(uid, version, fields, ctx, STORED)


PODS = Kind(
    name="pods", resources=(POD,), columns=COLUMNS, project=project_pod,
    indexes=(("namespace", "name"),),
    volatile=("metadata.managedFields", "status.conditions", "status.containerStatuses[]"
              ".restartCount/state", "status.startTime"),
)
