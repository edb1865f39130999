"""Node → record: what a CMDB user asks of a node, and nothing that changes by itself.

Stored: name, the cluster's biz_id, labels, the first `InternalIP` address, the kubelet
version, the `Ready` condition's status (`True`, `False`, `Unknown`; `Unknown` when the
node reports none) and whether it is cordoned. Not stored, and so never a reason to write:
`lastHeartbeatTime` and `lastTransitionTime` of every condition (a node heartbeats every
10 to 60 s), images, capacity and allocatable, daemon endpoints. That is what makes 2,000
heartbeating nodes cost no writes at all (DESIGN §7; a test counts the writes).
"""

from __future__ import annotations

import msgspec

from reconciler import Record

from .descriptor import (
    TRUNCATED,
    Column,
    ColumnType,
    Kind,
    Meta,
    Projection,
    Resource,
    decode,
    fit,
    identity,
    labels_json,
    record,
)

NODE = Resource(group="", version="v1", plural="nodes", kind="Node", namespaced=False)

COLUMNS: tuple[Column, ...] = (
    Column("name", limit=253),
    Column("biz_id", ColumnType.INT, default=0),
    Column("labels", ColumnType.JSON, default="{}"),
    Column("internal_ip", limit=64),
    Column("kubelet_version", limit=64),
    Column("ready", limit=16),
    Column("unschedulable", ColumnType.INT, default=0),
)
STORED = (*COLUMNS, TRUNCATED)
LIMITS = {c.name: c.limit for c in COLUMNS if c.limit is not None} | {"truncated": 255}


class _Address(msgspec.Struct):
    type: str = ""
    address: str = ""


class _Condition(msgspec.Struct):
    type: str = ""
    status: str = ""


class _Info(msgspec.Struct):
    kubeletVersion: str = ""


class _Status(msgspec.Struct):
    addresses: list[_Address] | None = None
    conditions: list[_Condition] | None = None
    nodeInfo: _Info | None = None


class _Spec(msgspec.Struct):
    unschedulable: bool | None = None


class _Node(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: _Spec = msgspec.field(default_factory=_Spec)
    status: _Status = msgspec.field(default_factory=_Status)


_NODE = msgspec.json.Decoder(_Node)


def project_node(raw: bytes, ctx: Projection) -> Record:
    """Project a Node's JSON into a record; `BadObject` (one line) when unusable."""
    node = decode(_NODE, raw)
    uid, version = identity(node.metadata, namespaced=False)
    status = node.status
    internal = next((a.address for a in status.addresses or () if a.type == "InternalIP"), "")
    ready = next((c.status for c in status.conditions or () if c.type == "Ready"), "")
    fields = fit({
        "name": node.metadata.name,
        "biz_id": ctx.biz_id,
        "labels": labels_json(node.metadata.labels),
        "internal_ip": internal,
        "kubelet_version": status.nodeInfo.kubeletVersion if status.nodeInfo else "",
        "ready": ready if ready in ("True", "False") else "Unknown",
        "unschedulable": 1 if node.spec.unschedulable else 0,
    }, LIMITS)
    return record(uid, version, fields, ctx, STORED)


NODES = Kind(
    name="nodes", resources=(NODE,), columns=COLUMNS, project=project_node,
    indexes=(("internal_ip",),),
    volatile=("status.conditions[].lastHeartbeatTime", "status.conditions[].lastTransitionTime",
              "status.images", "status.capacity", "status.allocatable"),
)
