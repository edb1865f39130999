"""Pod → CMDB record: the only place that knows which Pod fields the CMDB stores.

Input is a Pod as a plain dict (parsed by orjson, never a client model class). Output is a
`reconciler.Record` whose `fields` are exactly the contract's columns; `labels` and
`containers` are serialised once here (sorted keys) and reused by both the checksum and
the store. Volatile parts of a Pod (managedFields, conditions, restart counts, timestamps)
are not projected, so they never cause a write.

A Pod that cannot be projected (no uid, no namespace, wrong types) raises `BadObject` with
a one-line reason; the caller counts and logs it and carries on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from reconciler import TOMBSTONE, ObjectKey, Record, State, checksum
from reconciler._types import Checksum

SET_ANNOTATION = "set.bkcmdb.bkbcs.tencent.com"
MODULE_ANNOTATION = "module.bkcmdb.bkbcs.tencent.com"
DEFAULT_SET = "bkbcs"
DEFAULT_MODULE = "bkbcs"

COLUMNS: tuple[str, ...] = (
    "namespace",
    "name",
    "biz_id",
    "set_name",
    "module_name",
    "node_name",
    "host_ip",
    "pod_ip",
    "phase",
    "labels",
    "containers",
)
"""The stored, checksummed fields of a Pod, in table order (after cluster_id and uid)."""

TEXT_LIMITS: Mapping[str, int] = {
    "namespace": 253,
    "name": 253,
    "set_name": 255,
    "module_name": 255,
    "node_name": 253,
    "host_ip": 64,
    "pod_ip": 64,
    "phase": 32,
}
"""Column widths of the string columns; a longer value is a bad object, not a failed batch."""


class BadObject(ValueError):
    """An object that cannot be projected; the message is one line naming the problem."""


def _str(value: Any, what: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise BadObject(f"missing {what}")
        return ""
    if not isinstance(value, str):
        raise BadObject(f"{what} is {type(value).__name__}, expected string")
    return value


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadObject(f"{what} is {type(value).__name__}, expected object")
    return value


def _containers(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    if not isinstance(raw, list) or not isinstance(statuses, list):
        raise BadObject("containers is not a list")
    ids = {
        s.get("name"): s.get("containerID") or ""
        for s in statuses
        if isinstance(s, dict)
    }
    out = []
    for c in raw:
        if not isinstance(c, dict):
            raise BadObject("container is not an object")
        name = _str(c.get("name"), "container name")
        out.append(
            {"name": name, "image": _str(c.get("image"), "container image"),
             "container_id": _str(ids.get(name), "containerID")}
        )
    return out


def pod_fields(pod: Mapping[str, Any], *, biz_id: int) -> tuple[ObjectKey, int, dict[str, Any]]:
    """Return (uid, resourceVersion, stored fields) of a Pod dict; raise `BadObject`."""
    if not isinstance(pod, dict):
        raise BadObject("object is not a JSON object")
    meta = _mapping(pod.get("metadata"), "metadata")
    uid = _str(meta.get("uid"), "metadata.uid", required=True)
    namespace = _str(meta.get("namespace"), "metadata.namespace", required=True)
    name = _str(meta.get("name"), "metadata.name", required=True)
    rv_text = meta.get("resourceVersion")
    try:
        version = int(rv_text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadObject(f"metadata.resourceVersion {rv_text!r} is not an integer") from None
    annotations = _mapping(meta.get("annotations"), "metadata.annotations")
    labels = _mapping(meta.get("labels"), "metadata.labels")
    spec = _mapping(pod.get("spec"), "spec")
    status = _mapping(pod.get("status"), "status")
    set_name = annotations.get(SET_ANNOTATION)
    module_name = annotations.get(MODULE_ANNOTATION)
    both = isinstance(set_name, str) and set_name and isinstance(module_name, str) and module_name
    if not both:
        set_name, module_name = DEFAULT_SET, DEFAULT_MODULE
    fields: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "biz_id": biz_id,
        "set_name": set_name,
        "module_name": module_name,
        "node_name": _str(spec.get("nodeName"), "spec.nodeName"),
        "host_ip": _str(status.get("hostIP"), "status.hostIP"),
        "pod_ip": _str(status.get("podIP"), "status.podIP"),
        "phase": _str(status.get("phase"), "status.phase"),
        "labels": orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
        "containers": orjson.dumps(_containers(spec, status)).decode(),
    }
    for column, limit in TEXT_LIMITS.items():
        if len(fields[column]) > limit:
            raise BadObject(f"{column} is {len(fields[column])} characters, limit {limit}")
    return ObjectKey(uid), version, fields


def project(
    pod: Mapping[str, Any], *, biz_id: int, observed: datetime, deleted: bool = False
) -> Record:
    """Project a Pod dict into a record; `deleted` marks a DELETED watch event."""
    key, version, fields = pod_fields(pod, biz_id=biz_id)
    sum_: Checksum = TOMBSTONE if deleted else checksum(fields)
    return Record(
        key=key, version=version, checksum=sum_, query_at=observed,
        state=State.DELETED if deleted else State.ACTIVE, fields=fields,
    )
