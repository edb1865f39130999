"""The values the bk-cmdb client takes and returns, each with its bk-cmdb unique key.

Two families: *specs* say what should exist (what the pusher derives from the CMDB tables;
they become request bodies), and *records* say what does exist (parsed from list answers,
always with bk-cmdb's id). Both expose `key`, bk-cmdb's unique key for the type, so a
level-triggered pusher can diff "should" against "is" by key and act by id:

| type | key (bk-cmdb unique index) |
| --- | --- |
| cluster | `uid` |
| namespace | `(cluster_id, name)` |
| node | `(cluster_id, name)` |
| workload | `(kind, namespace_id, name)` (one table per kind) |
| pod | `(ref_kind, ref_id, name)` |
| container-server pod | `(cluster, namespace, name)` |

Records keep the full row bk-cmdb answered in `raw`, for fields this module does not name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POD_LABEL_DOT = "\\u002e"
"""bk-cmdb ≥ 3.13 answers a `.` in a pod label key as these six characters; decoded on read."""

NamespaceKey = tuple[int, str]
NodeKey = tuple[int, str]
WorkloadKey = tuple[str, int, str]
PodKey = tuple[str, int, str]
ContainerPodKey = tuple[str, str, str]


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


# -- specs ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """A kube cluster to create: `uid` is our cluster id."""

    uid: str
    name: str
    biz_id: int
    type: str = "INDEPENDENT_CLUSTER"
    scheduling_engine: str = "k8s"
    version: str = ""

    @property
    def key(self) -> str:
        """bk-cmdb's unique key: the uid."""
        return self.uid


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceSpec:
    """A namespace to create in a bk-cmdb cluster (by its bk-cmdb id)."""

    cluster_id: int
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> NamespaceKey:
        """bk-cmdb's unique key."""
        return (self.cluster_id, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """A node to create, on the bk-cmdb host `host_id` (a host of the cluster's business)."""

    cluster_id: int
    host_id: int
    name: str
    internal_ip: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False

    @property
    def key(self) -> NodeKey:
        """bk-cmdb's unique key."""
        return (self.cluster_id, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    """A workload of bk-cmdb kind `kind` (`deployment`, `statefulSet`, …, `pods`)."""

    kind: str
    namespace_id: int
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    replicas: int | None = None

    @property
    def key(self) -> WorkloadKey:
        """bk-cmdb's unique key (per kind table)."""
        return (self.kind, self.namespace_id, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSpec:
    """One container of a pod; `container_uid` is the runtime's id (required by bk-cmdb)."""

    name: str
    image: str
    container_uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSpec:
    """A pod to create; immutable in bk-cmdb (a change is delete + create)."""

    biz_id: int
    cluster_id: int
    namespace_id: int
    node_id: int
    host_id: int
    ref_kind: str
    ref_id: int
    name: str
    ip: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    operator: tuple[str, ...] = ()
    """bk-cmdb requires a non-empty list; empty means "the client's username"."""
    containers: tuple[ContainerSpec, ...] = ()

    @property
    def key(self) -> PodKey:
        """bk-cmdb's unique key."""
        return (self.ref_kind, self.ref_id, self.name)


# -- records --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class KubeCluster:
    """A kube cluster as bk-cmdb lists it."""

    id: int
    biz_id: int
    uid: str
    name: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        """bk-cmdb's unique key."""
        return self.uid

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> KubeCluster:
        """From one `list_kube_cluster` row."""
        return cls(id=int(row["id"]), biz_id=int(row.get("bk_biz_id", 0)),
                   uid=str(row.get("uid", "")), name=str(row.get("name", "")), raw=row)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeNamespace:
    """A namespace as bk-cmdb lists it."""

    id: int
    biz_id: int
    cluster_id: int
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> NamespaceKey:
        """bk-cmdb's unique key."""
        return (self.cluster_id, self.name)

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> KubeNamespace:
        """From one `list_kube_namespace` row."""
        return cls(id=int(row["id"]), biz_id=int(row.get("bk_biz_id", 0)),
                   cluster_id=int(row.get("bk_cluster_id", 0)), name=str(row.get("name", "")),
                   labels=_labels(row.get("labels")), raw=row)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeNode:
    """A node as bk-cmdb lists it."""

    id: int
    biz_id: int
    cluster_id: int
    host_id: int
    name: str
    internal_ip: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> NodeKey:
        """bk-cmdb's unique key."""
        return (self.cluster_id, self.name)

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> KubeNode:
        """From one `list_kube_node` row."""
        return cls(id=int(row["id"]), biz_id=int(row.get("bk_biz_id", 0)),
                   cluster_id=int(row.get("bk_cluster_id", 0)),
                   host_id=int(row.get("bk_host_id", 0)), name=str(row.get("name", "")),
                   internal_ip=tuple(row.get("internal_ip") or ()),
                   labels=_labels(row.get("labels")),
                   unschedulable=bool(row.get("unschedulable", False)), raw=row)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeWorkload:
    """A workload as bk-cmdb lists it."""

    id: int
    kind: str
    biz_id: int
    cluster_id: int
    namespace_id: int
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    replicas: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> WorkloadKey:
        """bk-cmdb's unique key."""
        return (self.kind, self.namespace_id, self.name)

    @classmethod
    def parse(cls, kind: str, row: Mapping[str, Any]) -> KubeWorkload:
        """From one `list_kube_workload` row of `kind`."""
        replicas = row.get("replicas")
        return cls(id=int(row["id"]), kind=kind, biz_id=int(row.get("bk_biz_id", 0)),
                   cluster_id=int(row.get("bk_cluster_id", 0)),
                   namespace_id=int(row.get("bk_namespace_id", 0)),
                   namespace=str(row.get("namespace", "")), name=str(row.get("name", "")),
                   labels=_labels(row.get("labels")),
                   replicas=int(replicas) if isinstance(replicas, int) else None, raw=row)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubePod:
    """A pod as bk-cmdb lists it (label keys decoded back to dots)."""

    id: int
    biz_id: int
    cluster_id: int
    namespace_id: int
    node_id: int
    host_id: int
    ref_kind: str
    ref_id: int
    name: str
    ip: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> PodKey:
        """bk-cmdb's unique key."""
        return (self.ref_kind, self.ref_id, self.name)

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> KubePod:
        """From one `list_kube_pod` row."""
        ref = row.get("ref") if isinstance(row.get("ref"), Mapping) else {}
        labels = {k.replace(POD_LABEL_DOT, "."): v for k, v in _labels(row.get("labels")).items()}
        return cls(id=int(row["id"]), biz_id=int(row.get("bk_biz_id", 0)),
                   cluster_id=int(row.get("bk_cluster_id", 0)),
                   namespace_id=int(row.get("bk_namespace_id", 0)),
                   node_id=int(row.get("bk_node_id", 0)), host_id=int(row.get("bk_host_id", 0)),
                   ref_kind=str(ref.get("kind", "")), ref_id=int(ref.get("id", 0)),
                   name=str(row.get("name", "")), ip=str(row.get("ip") or ""), labels=labels,
                   raw=row)


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """A bk-cmdb host of a business."""

    id: int
    inner_ips: tuple[str, ...]
    cloud_id: int = 0

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> Host:
        """From one `list_biz_hosts` row; `bk_host_innerip` may list several addresses."""
        ips = tuple(ip.strip() for ip in str(row.get("bk_host_innerip") or "").split(",")
                    if ip.strip())
        return cls(id=int(row["bk_host_id"]), inner_ips=ips, cloud_id=int(row.get("bk_cloud_id")
                                                                         or 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class BizTopology:
    """A business's sets and modules by name: `module_id("bkbcs", "bkbcs")`."""

    biz_id: int
    modules: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def module_id(self, set_name: str, module_name: str) -> int | None:
        """The id of module `module_name` in set `set_name`, or None."""
        return self.modules.get((set_name, module_name))


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerPod:
    """A container-server CMDB `pod`: `fields` are its `bk_pod_*` (and placement) fields."""

    id: int
    biz_id: int
    module_id: int
    cluster: str
    namespace: str
    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> ContainerPodKey:
        """The key pods are updated and deleted by."""
        return (self.cluster, self.namespace, self.name)

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> ContainerPod:
        """From one `findmany/container/.../pod` row."""
        return cls(id=int(row.get("bk_pod_id", 0)), biz_id=int(row.get("bk_biz_id", 0)),
                   module_id=int(row.get("bk_module_id", 0)),
                   cluster=str(row.get("bk_pod_cluster", "")),
                   namespace=str(row.get("bk_pod_namespace", "")),
                   name=str(row.get("bk_pod_name", "")), fields=row)
