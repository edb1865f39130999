"""Namespace → record: name, the cluster's biz_id, labels and phase (Active, Terminating).

Namespaces change rarely; they are synced because a CMDB's pods are read by namespace and
because the BlueKing CMDB's kube model needs a namespace before any of its workloads.
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

NAMESPACE = Resource(group="", version="v1", plural="namespaces", kind="Namespace",
                     namespaced=False)

COLUMNS: tuple[Column, ...] = (
    Column("name", limit=253),
    Column("biz_id", ColumnType.INT, default=0),
    Column("labels", ColumnType.JSON, default="{}"),
    Column("phase", limit=32),
)
STORED = (*COLUMNS, TRUNCATED)
LIMITS = {c.name: c.limit for c in COLUMNS if c.limit is not None} | {"truncated": 255}


class _Status(msgspec.Struct):
    phase: str | None = None


class _Namespace(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    status: _Status = msgspec.field(default_factory=_Status)


_NAMESPACE = msgspec.json.Decoder(_Namespace)


def project_namespace(raw: bytes, ctx: Projection) -> Record:
    """Project a Namespace's JSON into a record; `BadObject` (one line) when unusable."""
    ns = decode(_NAMESPACE, raw)
    uid, version = identity(ns.metadata, namespaced=False)
    fields = fit({
        "name": ns.metadata.name,
        "biz_id": ctx.biz_id,
        "labels": labels_json(ns.metadata.labels),
        "phase": ns.status.phase or "",
    }, LIMITS)
    return record(uid, version, fields, ctx, STORED)


NAMESPACES = Kind(
    name="namespaces", resources=(NAMESPACE,), columns=COLUMNS, project=project_namespace,
)
