"""Deployment, StatefulSet, DaemonSet, Job, CronJob → records of one `workloads` table.

Stored: the Kubernetes kind (as Kubernetes spells it: the discriminator column that tells
the five resources apart in one table), namespace, name, the cluster's biz_id, labels,
`spec.replicas` (NULL where the kind has none: DaemonSet, Job, CronJob) and the images of
the pod template's containers, in order (a CronJob's template is inside its job
template). Not stored: every status count (ready, available, updated replicas; active,
succeeded jobs), which moves with every rollout and probe and would otherwise turn each
rollout into hundreds of writes.
"""

from __future__ import annotations

import msgspec
import orjson

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

DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
STATEFULSET = Resource("apps", "v1", "statefulsets", "StatefulSet", namespaced=True)
DAEMONSET = Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True)
JOB = Resource("batch", "v1", "jobs", "Job", namespaced=True)
CRONJOB = Resource("batch", "v1", "cronjobs", "CronJob", namespaced=True)

COLUMNS: tuple[Column, ...] = (
    Column("kind", limit=32),
    Column("namespace", limit=253),
    Column("name", limit=253),
    Column("biz_id", ColumnType.INT, default=0),
    Column("labels", ColumnType.JSON, default="{}"),
    Column("replicas", ColumnType.INT, nullable=True, default=None),
    Column("images", ColumnType.JSON, default="[]"),
)
STORED = (*COLUMNS, TRUNCATED)
LIMITS = {c.name: c.limit for c in COLUMNS if c.limit is not None} | {"truncated": 255}


class _Container(msgspec.Struct):
    image: str | None = None


class _PodSpec(msgspec.Struct):
    containers: list[_Container] | None = None


class _Template(msgspec.Struct):
    spec: _PodSpec = msgspec.field(default_factory=_PodSpec)


class _JobSpec(msgspec.Struct):
    template: _Template = msgspec.field(default_factory=_Template)


class _JobTemplate(msgspec.Struct):
    spec: _JobSpec = msgspec.field(default_factory=_JobSpec)


class _Spec(msgspec.Struct):
    replicas: int | None = None
    template: _Template | None = None
    jobTemplate: _JobTemplate | None = None


class _Workload(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: _Spec = msgspec.field(default_factory=_Spec)


_WORKLOAD = msgspec.json.Decoder(_Workload)
_HAS_REPLICAS = frozenset({"Deployment", "StatefulSet"})


def project_workload(raw: bytes, ctx: Projection) -> Record:
    """Project a workload's JSON into a record; `BadObject` (one line) when unusable."""
    obj = decode(_WORKLOAD, raw)
    uid, version = identity(obj.metadata, namespaced=True)
    spec = obj.spec
    kind = ctx.resource.kind
    template = spec.jobTemplate.spec.template if spec.jobTemplate else spec.template
    containers = template.spec.containers if template else None
    replicas = None
    if kind in _HAS_REPLICAS:
        replicas = 1 if spec.replicas is None else spec.replicas  # the API's default
    fields = fit({
        "kind": kind,
        "namespace": obj.metadata.namespace,
        "name": obj.metadata.name,
        "biz_id": ctx.biz_id,
        "labels": labels_json(obj.metadata.labels),
        "replicas": replicas,
        "images": orjson.dumps([c.image or "" for c in containers or ()]).decode(),
    }, LIMITS)
    return record(uid, version, fields, ctx, STORED)


WORKLOADS = Kind(
    name="workloads", resources=(DEPLOYMENT, STATEFULSET, DAEMONSET, JOB, CRONJOB),
    columns=COLUMNS, project=project_workload, discriminator="kind",
    indexes=(("kind", "state"), ("namespace", "name")),
    volatile=("status.*", "metadata.generation", "metadata.managedFields"),
)
