"""From a table row to what bk-cmdb should hold: the mapping, its digest, and the comparison.

Each Active row becomes a small frozen *wanted* value holding only the fields bk-cmdb has a
place for (CONTRACT "The BlueKing CMDB"):

- namespace → kube namespace: name, labels;
- node → kube node on the host whose `bk_host_innerip` is `internal_ip`: name, internal_ip,
  labels, unschedulable;
- workload → kube workload of kind `deployment statefulSet daemonSet job cronJob`: name,
  labels, replicas;
- pod, `api: kube` → kube pod under its workload, else the namespace's `pods` workload:
  name, ip, labels, containers (name, image, and `container_uid` = the container id without
  its `runtime://` prefix);
- pod, `api: container` → container-server pod under a module: the `bk_pod_*` fields of the
  original design.

The *digest* of a wanted value is a hash of exactly those fields, and it is what the ledger
remembers. So a change bk-cmdb cannot see (a pod's phase under `api: kube`, a node's
readiness or kubelet version, a workload's images) changes nothing and costs no request,
while any change bk-cmdb can see makes the object differ: updated in place where bk-cmdb
allows it, deleted and created again for kube pods, which bk-cmdb cannot update.

`matches` compares a record bk-cmdb listed with the wanted value (the full reconcile's
check for hand edits, and the check of an adopted leftover). A row that cannot be read
(malformed JSON in a column) raises `BadRow`, one line naming the row and the column; the
pusher reports it and leaves whatever bk-cmdb holds for that uid alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import xxhash

from ..types import ContainerPod, KubeNamespace, KubeNode, KubePod, KubeWorkload

WORKLOAD_KINDS: Mapping[str, str] = {
    "Deployment": "deployment", "StatefulSet": "statefulSet", "DaemonSet": "daemonSet",
    "Job": "job", "CronJob": "cronJob",
}
"""Kubernetes kind (as the tables spell it) → bk-cmdb workload kind."""
PODS_KIND = "pods"
"""bk-cmdb's workload kind for pods without a supported controller."""
PODS_WORKLOAD_NAME = "pods"
"""The name of the one `pods` workload the product makes per namespace that needs it."""
ID_SCHEME = "://"
"""Container ids are `runtime://id` in Kubernetes; bk-cmdb's `container_uid` gets the id."""


class BadRow(ValueError):
    """A table row the pusher cannot read; the message names the row and the column."""


def digest(value: Any) -> str:
    """A stable hash of a JSON-able value (sorted keys)."""
    return xxhash.xxh3_64_hexdigest(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _json(row: Mapping[str, Any], column: str, kind: type) -> Any:
    raw = row.get(column)
    if raw is None or raw == "":
        return kind()
    if isinstance(raw, kind):
        return raw
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        raise BadRow(f"row {row.get('uid')!r}: column {column} is not JSON") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise BadRow(f"row {row.get('uid')!r}: column {column} is not a JSON {kind.__name__}")
    return value


def _labels(row: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in _json(row, "labels", dict).items()}


def _text(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value)


def container_uid(container_id: str) -> str:
    """`containerd://abc` → `abc`; "" stays "" (the container has not started yet)."""
    return container_id.split(ID_SCHEME, 1)[-1] if container_id else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WantedNamespace:
    """A namespace bk-cmdb should hold."""

    uid: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    digest: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WantedNamespace:
        """From a `namespaces` row."""
        name, labels = _text(row, "name"), _labels(row)
        return cls(uid=str(row["uid"]), name=name, labels=labels,
                   digest=digest(["namespace", name, labels]))

    def update(self) -> dict[str, Any]:
        """The editable fields, as `batch_update_kube_namespace` takes them."""
        return {"labels": dict(self.labels)}

    def matches(self, record: KubeNamespace) -> bool:
        """Whether bk-cmdb's namespace holds these fields."""
        return record.name == self.name and dict(record.labels) == dict(self.labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class WantedNode:
    """A node bk-cmdb should hold, if a host has its internal IP."""

    uid: str
    name: str
    internal_ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    digest: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WantedNode:
        """From a `nodes` row."""
        name, ip, labels = _text(row, "name"), _text(row, "internal_ip"), _labels(row)
        unschedulable = bool(int(row.get("unschedulable") or 0))
        return cls(uid=str(row["uid"]), name=name, internal_ip=ip, labels=labels,
                   unschedulable=unschedulable,
                   digest=digest(["node", name, ip, labels, unschedulable]))

    def update(self) -> dict[str, Any]:
        """The editable fields, as `batch_update_kube_node` takes them."""
        return {"labels": dict(self.labels), "unschedulable": self.unschedulable,
                "internal_ip": [self.internal_ip]}

    def matches(self, record: KubeNode, host_id: int) -> bool:
        """Whether bk-cmdb's node holds these fields, on `host_id`."""
        return (record.name == self.name and record.host_id == host_id
                and tuple(record.internal_ip) == (self.internal_ip,)
                and dict(record.labels) == dict(self.labels)
                and record.unschedulable == self.unschedulable)


@dataclass(frozen=True, slots=True, kw_only=True)
class WantedWorkload:
    """A workload bk-cmdb should hold (a supported kind only)."""

    uid: str
    kind: str
    bk_kind: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    replicas: int | None = None
    digest: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WantedWorkload | None:
        """From a `workloads` row; None for a kind bk-cmdb has no table for."""
        kind = _text(row, "kind")
        if kind not in WORKLOAD_KINDS:
            return None
        replicas = row.get("replicas")
        replicas = int(replicas) if replicas is not None and replicas != "" else None
        namespace, name, labels = _text(row, "namespace"), _text(row, "name"), _labels(row)
        return cls(uid=str(row["uid"]), kind=kind, bk_kind=WORKLOAD_KINDS[kind],
                   namespace=namespace, name=name, labels=labels, replicas=replicas,
                   digest=digest(["workload", kind, namespace, name, labels, replicas]))

    def update(self) -> dict[str, Any]:
        """The editable fields, as `batch_update_kube_workload` takes them."""
        data: dict[str, Any] = {"labels": dict(self.labels)}
        if self.replicas is not None:
            data["replicas"] = self.replicas
        return data

    def matches(self, record: KubeWorkload) -> bool:
        """Whether bk-cmdb's workload holds these fields."""
        return (record.name == self.name and dict(record.labels) == dict(self.labels)
                and (self.replicas is None or record.replicas == self.replicas))


@dataclass(frozen=True, slots=True, kw_only=True)
class WantedContainer:
    """One container of a pod."""

    name: str
    image: str
    container_uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WantedPod:
    """A pod bk-cmdb should hold; `digest` is for the API the pusher speaks."""

    uid: str
    cluster: str
    namespace: str
    name: str
    node_name: str = ""
    host_ip: str = ""
    ip: str = ""
    phase: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[WantedContainer, ...] = ()
    raw_containers: tuple[Mapping[str, str], ...] = ()
    workload_kind: str = ""
    workload_name: str = ""
    set_name: str = ""
    module_name: str = ""
    digest: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, api: str) -> WantedPod:
        """From a `pods` row, with the digest of `api` (`kube` or `container`)."""
        items = _json(row, "containers", list)
        if not all(isinstance(c, Mapping) for c in items):
            raise BadRow(f"row {row.get('uid')!r}: column containers holds a non-object")
        raw = tuple({"name": str(c.get("name") or ""), "image": str(c.get("image") or ""),
                     "container_id": str(c.get("container_id") or "")} for c in items)
        ids = [container_uid(c["container_id"]) for c in raw if c["container_id"]]
        if len(ids) != len(set(ids)):
            # bk-cmdb's unique key (pod, container_uid) would refuse the pod with 1199014,
            # which reads as "exists, adopt it" and can never succeed: it waits as a bad row
            raise BadRow(f"row {row.get('uid')!r}: two containers share a container id")
        pod = cls(
            uid=str(row["uid"]), cluster=_text(row, "cluster_id"),
            namespace=_text(row, "namespace"), name=_text(row, "name"),
            node_name=_text(row, "node_name"), host_ip=_text(row, "host_ip"),
            ip=_text(row, "pod_ip"), phase=_text(row, "phase"), labels=_labels(row),
            containers=tuple(WantedContainer(name=c["name"], image=c["image"],
                                             container_uid=container_uid(c["container_id"]))
                             for c in raw),
            raw_containers=raw, workload_kind=_text(row, "workload_kind"),
            workload_name=_text(row, "workload_name"), set_name=_text(row, "set_name"),
            module_name=_text(row, "module_name"))
        if api == "container":  # where it goes is part of what is pushed
            value: Any = [pod.container_fields(), pod.set_name, pod.module_name]
        else:
            value = pod._kube_fields()
        return replace(pod, digest=digest(value))

    # -- api: kube --------------------------------------------------------------------------------

    def _kube_fields(self) -> list[Any]:
        return ["pod", self.namespace, self.name, self.node_name, self.ip, dict(self.labels),
                [[c.name, c.image, c.container_uid] for c in self.containers]]

    @property
    def started(self) -> bool:
        """Whether every container has an id (bk-cmdb requires `container_uid`)."""
        return all(c.container_uid for c in self.containers)

    def matches(self, record: KubePod, *, namespace_id: int, node_id: int, ref_kind: str,
                ref_id: int, host_id: int) -> bool:
        """Whether bk-cmdb's pod holds these fields under these parents (containers, which
        the pod listing does not carry, are not compared)."""
        return (record.name == self.name and record.ip == self.ip
                and dict(record.labels) == dict(self.labels)
                and (record.namespace_id, record.node_id, record.ref_kind, record.ref_id,
                     record.host_id) == (namespace_id, node_id, ref_kind, ref_id, host_id))

    # -- api: container ---------------------------------------------------------------------------

    def container_fields(self) -> dict[str, Any]:
        """The `bk_pod_*` fields of the original design (JSON columns as JSON strings)."""
        return {
            "bk_pod_name": self.name, "bk_pod_namespace": self.namespace,
            "bk_pod_cluster": self.cluster, "bk_pod_uuid": self.uid,
            "bk_pod_workloadtype": self.workload_kind, "bk_pod_workloadname": self.workload_name,
            "bk_pod_labels": orjson.dumps(dict(self.labels),
                                          option=orjson.OPT_SORT_KEYS).decode(),
            "bk_pod_ip": self.ip, "bk_pod_status": self.phase,
            "bk_pod_containers": orjson.dumps(list(self.raw_containers)).decode(),
            "bk_host_innerip": self.host_ip, "bk_cloud_id": 0,
        }

    def container_matches(self, record: ContainerPod, module_id: int) -> bool:
        """Whether bk-cmdb's container-server pod holds these fields under `module_id`."""
        fields = record.fields
        return record.module_id == module_id and all(
            fields.get(k) == v for k, v in self.container_fields().items())
