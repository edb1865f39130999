"""The reference model of bk-cmdb: its kube objects, their rules, and the oracle for tests.

bk-cmdb cannot run here, so its behaviour is written down once, in memory, from its sources
(docs/bkcmdb-api.md names the file behind every rule): the simulator keeps its whole state in
a `BkCmdbModel` and only translates HTTP to method calls, and the differential test drives the
same operations through the client over HTTP and straight into a second model, so any
difference is the wire layer's fault. What it holds:

- **Tables and ids.** Clusters, namespaces, nodes, one workload table per kind, pods and
  containers; each table draws ids from its own sequence, as Mongo's `NextSequences` does, so
  ids are predictable (1, 2, 3 … per table) and two models fed the same requests agree.
- **Unique keys** (bk-cmdb's unique indexes): cluster `uid`; namespace and node `(cluster,
  name)`; workload `(namespace, name)` per kind; pod `(ref.id, ref.kind, name)`; container
  `(pod, container_uid)`. A clash is 1199014.
- **References.** A namespace needs its cluster (1199019); a node its cluster in the same
  business and a host of that business (1199006); a workload its namespace (1199019); a pod
  its workload in the pod's namespace and cluster, and its node in that cluster (1199006).
  Deletes are refused while something below still refers (1199006): a namespace with pods or
  workloads, a workload with pods, a node with pods, a cluster with anything.
- **Limits** (1199035) and **transactions**: every write is validated whole before anything
  changes, so a refused batch changes nothing — bk-cmdb runs each write in one transaction.

Methods take the route's parsed JSON body and return the answer's `data`, or raise
`codes.Refusal` with bk-cmdb's code and message; they never await, so a caller on one event
loop sees each request applied atomically.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from . import codes
from .codes import Refusal, refuse
from .model_hosts import HostsModel
from .model_pods import ContainerPodsModel
from .query import select

Row = dict[str, Any]
CLUSTER_TYPES = ("INDEPENDENT_CLUSTER", "SHARE_CLUSTER")
MISSING_ARG = "%!s(MISSING)"
"""What Go's fmt prints for a `%s` without an argument: bk-cmdb's `CCErrorf(code)` does that."""
NODE_READONLY = frozenset({"id", "bk_biz_id", "cluster_uid", "name", "bk_supplier_account",
                           "bk_cluster_id", "bk_host_id", "has_pod"})
NAMESPACE_EDITABLE = frozenset({"labels", "resource_quotas"})
WORKLOAD_READONLY = frozenset({"id", "name", "namespace", "bk_namespace_id", "bk_cluster_id",
                               "cluster_uid", "bk_biz_id", "bk_supplier_account", "kind"})
POD_LABEL_DOT = "\\u002e"
"""bk-cmdb ≥ 3.13 stores a `.` in a pod label key as these six characters (Mongo keys)."""


def _biz(body: Mapping[str, Any]) -> int:
    biz = body.get("bk_biz_id")
    if not isinstance(biz, int) or biz <= 0:
        raise refuse(codes.PARAMS_NEED_SET, "bk_biz_id")
    return biz


def _items(body: Mapping[str, Any], name: str, limit: int) -> list[Mapping[str, Any]]:
    items = body.get(name)
    if not isinstance(items, list) or not items:
        raise refuse(codes.PARAMS_NEED_SET, name)
    if len(items) > limit:
        raise refuse(codes.EXCEED_LIMIT, name, limit)
    if not all(isinstance(item, Mapping) for item in items):
        raise refuse(codes.PARAMS_INVALID, name)
    return items


def _ids(body: Mapping[str, Any], limit: int, *, code: int = codes.PARAMS_NEED_SET,
         shown: int | None = None) -> list[int]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise refuse(code, "ids")
    if len(ids) > limit:
        raise refuse(codes.EXCEED_LIMIT, "ids", limit if shown is None else shown)
    if not all(isinstance(i, int) for i in ids):
        raise refuse(codes.PARAMS_INVALID, "ids")
    return ids


def _duplicate(**fields: Any) -> Refusal:
    shown = ", ".join(f'{k}: "{v}"' if isinstance(v, str) else f"{k}: {v}"
                      for k, v in fields.items())
    return refuse(codes.DUPLICATE_ITEM, shown)


class BkCmdbModel:
    """bk-cmdb's kube model plus the read-only topology and the container-server pods."""

    def __init__(self, *, supplier_account: str = "0") -> None:
        self.supplier_account = supplier_account
        self.hosts = HostsModel()
        self.container = ContainerPodsModel(self.hosts)
        self.clusters: dict[int, Row] = {}
        self.namespaces: dict[int, Row] = {}
        self.nodes: dict[int, Row] = {}
        self.workloads: dict[str, dict[int, Row]] = {kind: {} for kind in codes.WORKLOAD_KINDS}
        self.pods: dict[int, Row] = {}
        self.containers: dict[int, Row] = {}
        self._pod_keys: set[tuple[int, str, str]] = set()
        """(ref id, ref kind, name) of every pod: the unique key, kept as pods come and go
        (a set built per request made a 50,000-pod benchmark measure the model, not us)."""
        self._containers_of: dict[int, list[int]] = {}
        """Container ids per pod id, for the deletes."""
        self._sequences: defaultdict[str, int] = defaultdict(int)

    def _next_ids(self, table: str, count: int) -> list[int]:
        start = self._sequences[table]
        self._sequences[table] = start + count
        return list(range(start + 1, start + count + 1))

    def _kind(self, kind: str) -> dict[int, Row]:
        if kind not in self.workloads:
            raise Refusal(codes.UNKNOWN_ERROR,
                          f"can not support this type of workload, kind: {kind}")
        return self.workloads[kind]

    # -- clusters ---------------------------------------------------------------------------------

    def create_cluster(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /create/kube/cluster`."""
        biz = _biz(body)
        for name in ("name", "uid", "type"):
            if not isinstance(body.get(name), str) or not body.get(name):
                raise refuse(codes.PARAMS_IS_INVALID, name)
        if body["type"] not in CLUSTER_TYPES:
            raise refuse(codes.PARAMS_IS_INVALID, "type")
        if any(c["uid"] == body["uid"] for c in self.clusters.values()):
            raise _duplicate(uid=body["uid"])
        (cid,) = self._next_ids("cluster", 1)
        self.clusters[cid] = {**body, "id": cid, "bk_biz_id": biz,
                              "bk_supplier_account": self.supplier_account}
        return {"id": cid}

    def list_clusters(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/kube/cluster`."""
        return self._list(self.clusters.values(), body)

    def delete_clusters(self, body: Mapping[str, Any]) -> None:
        """`DELETE /delete/kube/cluster`: refused while anything is left in a cluster."""
        biz = _biz(body)
        ids = _ids(body, codes.MAX_CLUSTER_IDS)
        found = [self.clusters[i] for i in ids if i in self.clusters]
        bizs = {c["bk_biz_id"] for c in found}
        if len(bizs) != 1:
            raise Refusal(codes.UNKNOWN_ERROR, "node ids exist in different businesses")
        if biz not in bizs:
            raise Refusal(codes.UNKNOWN_ERROR, f"cluster ids not in biz {biz}")
        wanted = set(ids)
        tables: list[Iterable[Row]] = [self.namespaces.values(), self.nodes.values(),
                                       self.pods.values(), *(t.values() for t in
                                                             self.workloads.values())]
        if any(row["bk_cluster_id"] in wanted for table in tables for row in table):
            raise refuse(codes.PARAMS_INVALID, MISSING_ARG)
        for cid in ids:
            self.clusters.pop(cid, None)

    # -- namespaces -------------------------------------------------------------------------------

    def create_namespaces(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /createmany/kube/namespace`."""
        biz = _biz(body)
        items = _items(body, "data", codes.MAX_NAMESPACES)
        for item in items:
            if not isinstance(item.get("bk_cluster_id"), int) or not item["bk_cluster_id"]:
                raise refuse(codes.PARAMS_NEED_SET, "bk_cluster_id")
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise refuse(codes.PARAMS_NEED_SET, "name")
        if any(item["bk_cluster_id"] not in self.clusters for item in items):
            raise refuse(codes.NOT_FOUND)
        taken = {(r["bk_cluster_id"], r["name"]) for r in self.namespaces.values()}
        for item in items:
            cluster = self.clusters[item["bk_cluster_id"]]
            if cluster["bk_biz_id"] != biz and cluster["type"] != "SHARE_CLUSTER":
                raise refuse(codes.PARAMS_INVALID, "type")
            key = (item["bk_cluster_id"], item["name"])
            if key in taken:
                raise _duplicate(bk_cluster_id=key[0], name=key[1])
            taken.add(key)
        ids = self._next_ids("namespace", len(items))
        for nid, item in zip(ids, items, strict=True):
            cluster = self.clusters[item["bk_cluster_id"]]
            self.namespaces[nid] = {
                "id": nid, "bk_biz_id": biz, "bk_cluster_id": item["bk_cluster_id"],
                "cluster_uid": cluster["uid"], "name": item["name"],
                "labels": item.get("labels"), "resource_quotas": item.get("resource_quotas"),
                "bk_supplier_account": self.supplier_account}
        return {"ids": ids}

    def list_namespaces(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/kube/namespace`."""
        return self._list(self.namespaces.values(), body)

    def update_namespaces(self, body: Mapping[str, Any]) -> None:
        """`PUT /updatemany/kube/namespace`: one `data` applied to every id."""
        biz = _biz(body)
        ids = _ids(body, codes.MAX_NAMESPACES)
        data = self._update_data(body, lambda field: field in NAMESPACE_EDITABLE)
        for nid in ids:
            row = self.namespaces.get(nid)
            if row is not None and row["bk_biz_id"] == biz:
                row.update(data)

    def delete_namespaces(self, body: Mapping[str, Any]) -> None:
        """`DELETE /deletemany/kube/namespace`: refused while pods or workloads are in one."""
        _biz(body)
        ids = set(_ids(body, codes.MAX_NAMESPACES))
        below = [self.pods.values(), *(t.values() for t in self.workloads.values())]
        if any(row["bk_namespace_id"] in ids for table in below for row in table):
            raise refuse(codes.PARAMS_INVALID, "id")
        for nid in ids:
            self.namespaces.pop(nid, None)

    # -- nodes ------------------------------------------------------------------------------------

    def create_nodes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /createmany/kube/node`: each node on a host of its cluster's business."""
        biz = _biz(body)
        items = _items(body, "data", codes.MAX_NODES)
        for item in items:
            if not isinstance(item.get("bk_cluster_id"), int) or not item["bk_cluster_id"]:
                raise refuse(codes.PARAMS_NEED_SET, "bk_cluster_id")
            if not isinstance(item.get("name"), str):
                raise refuse(codes.PARAMS_IS_INVALID, "name")
            if item.get("internal_ip") is None and item.get("external_ip") is None:
                raise refuse(codes.PARAMS_IS_INVALID,
                             "external_ip and internal_ip cannot be null at the same time")
        taken = {(r["bk_cluster_id"], r["name"]) for r in self.nodes.values()}
        for item in items:
            cluster = self.clusters.get(item["bk_cluster_id"])
            if cluster is None or cluster["bk_biz_id"] != biz:
                raise refuse(codes.PARAMS_INVALID, "bk_cluster_id")
            if self.hosts.host_biz(int(item.get("bk_host_id") or 0)) != biz:
                raise refuse(codes.PARAMS_INVALID, "bk_host_id")
            key = (item["bk_cluster_id"], item["name"])
            if key in taken:
                raise _duplicate(bk_cluster_id=key[0], name=key[1])
            taken.add(key)
        ids = self._next_ids("node", len(items))
        for nid, item in zip(ids, items, strict=True):
            self.nodes[nid] = {
                **item, "id": nid, "bk_biz_id": biz,
                "cluster_uid": self.clusters[item["bk_cluster_id"]]["uid"], "has_pod": False,
                "bk_supplier_account": self.supplier_account}
        return {"ids": ids}

    def list_nodes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/kube/node`."""
        return self._list(self.nodes.values(), body)

    def update_nodes(self, body: Mapping[str, Any]) -> None:
        """`PUT /updatemany/kube/node`."""
        biz = _biz(body)
        ids = _ids(body, codes.MAX_NODES)
        if len(set(ids)) != len(ids):
            raise Refusal(codes.UNKNOWN_ERROR, "duplicate value for nodeID parameter")
        data = self._update_data(body, lambda field: field not in NODE_READONLY)
        if any(nid not in self.nodes or self.nodes[nid]["bk_biz_id"] != biz for nid in ids):
            raise refuse(codes.PARAMS_INVALID, "ids")
        for nid in ids:
            self.nodes[nid].update(data)

    def delete_nodes(self, body: Mapping[str, Any]) -> None:
        """`DELETE /deletemany/kube/node`: refused while pods are on a node."""
        biz = _biz(body)
        ids = _ids(body, codes.MAX_NODES, shown=codes.MAX_CLUSTER_IDS)
        found = [self.nodes[i] for i in ids if i in self.nodes]
        if not found:
            return
        if {n["bk_biz_id"] for n in found} != {biz}:
            raise Refusal(codes.UNKNOWN_ERROR, f"node ids not in biz {biz}")
        wanted = set(ids)
        if any(pod["bk_node_id"] in wanted for pod in self.pods.values()):
            raise refuse(codes.PARAMS_INVALID, "no pods can exist under the node")
        for nid in ids:
            self.nodes.pop(nid, None)

    # -- workloads --------------------------------------------------------------------------------

    def create_workloads(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /createmany/kube/workload/{kind}`."""
        table = self._kind(kind)
        biz = _biz(body)
        items = _items(body, "data", codes.MAX_WORKLOADS)
        for item in items:
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise refuse(codes.PARAMS_NEED_SET, "name")
        if any(item.get("bk_namespace_id") not in self.namespaces for item in items):
            raise refuse(codes.NOT_FOUND)
        taken = {(r["bk_namespace_id"], r["name"]) for r in table.values()}
        for item in items:
            if self.namespaces[item["bk_namespace_id"]]["bk_biz_id"] != biz:
                raise refuse(codes.PARAMS_INVALID, "bk_namespace_id")
            key = (item["bk_namespace_id"], item["name"])
            if key in taken:
                raise _duplicate(bk_namespace_id=key[0], name=key[1])
            taken.add(key)
        ids = self._next_ids(f"workload:{kind}", len(items))
        for wid, item in zip(ids, items, strict=True):
            ns = self.namespaces[item["bk_namespace_id"]]
            table[wid] = {**item, "id": wid, "bk_biz_id": biz,
                          "bk_cluster_id": ns["bk_cluster_id"], "cluster_uid": ns["cluster_uid"],
                          "namespace": ns["name"], "bk_supplier_account": self.supplier_account}
        return {"ids": ids}

    def list_workloads(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/kube/workload/{kind}`."""
        return self._list(self._kind(kind).values(), body)

    def update_workloads(self, kind: str, body: Mapping[str, Any]) -> None:
        """`PUT /updatemany/kube/workload/{kind}`: at most 199 ids (bk-cmdb checks `>=`)."""
        table = self._kind(kind)
        biz = _biz(body)
        ids = _ids(body, codes.MAX_WORKLOAD_UPDATE_IDS, code=codes.PARAMS_IS_INVALID,
                   shown=codes.MAX_WORKLOADS)
        data = self._update_data(body, lambda field: field not in WORKLOAD_READONLY,
                                 code=codes.PARAMS_IS_INVALID)
        for wid in ids:
            row = table.get(wid)
            if row is not None and row["bk_biz_id"] == biz:
                row.update(data)

    def delete_workloads(self, kind: str, body: Mapping[str, Any]) -> None:
        """`DELETE /deletemany/kube/workload/{kind}`: refused while pods refer to one."""
        table = self._kind(kind)
        _biz(body)
        ids = set(_ids(body, codes.MAX_WORKLOADS, code=codes.PARAMS_IS_INVALID))
        if not any(wid in table for wid in ids):
            return
        if any(p["ref"]["kind"] == kind and p["ref"]["id"] in ids for p in self.pods.values()):
            raise refuse(codes.PARAMS_INVALID, "id")
        for wid in ids:
            table.pop(wid, None)

    # -- pods -------------------------------------------------------------------------------------

    def create_pods(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /createmany/kube/pod`: pods with their containers, at most 200 in all."""
        groups = body.get("data")
        if not isinstance(groups, list) or not groups:
            raise refuse(codes.PARAMS_NEED_SET, "data")
        pods: list[tuple[int, Mapping[str, Any]]] = []
        for group in groups:
            group_pods = group.get("pods") if isinstance(group, Mapping) else None
            if not isinstance(group_pods, list):
                raise refuse(codes.PARAMS_NEED_SET, "pods")
            pods.extend((int(group.get("bk_biz_id") or 0), pod) for pod in group_pods)
        if len(pods) > codes.MAX_PODS:
            raise refuse(codes.EXCEED_LIMIT, "pods", codes.MAX_PODS)
        if not pods:
            raise Refusal(codes.UNKNOWN_ERROR, "no pods need created")
        for _, pod in pods:
            _check_pod(pod)
        taken = set(self._pod_keys)  # this request's keys join it only if all of it applies
        rows = []
        for biz, pod in pods:
            spec = pod["spec"]
            ref = spec["ref"]
            workload = self.workloads[ref["kind"]].get(ref["id"])
            if (workload is None or workload["bk_namespace_id"] != spec["bk_namespace_id"]
                    or workload["bk_cluster_id"] != spec["bk_cluster_id"]):
                raise refuse(codes.PARAMS_INVALID, "workload")
            if workload["bk_biz_id"] != biz:
                raise refuse(codes.PARAMS_INVALID, "namespace")
            node = self.nodes.get(spec["bk_node_id"])
            if node is None or node["bk_cluster_id"] != spec["bk_cluster_id"] \
                    or node["bk_biz_id"] != biz:
                raise refuse(codes.PARAMS_INVALID, "node")
            key = (ref["id"], ref["kind"], pod["name"])
            if key in taken:
                raise _duplicate(**{"ref.id": key[0], "ref.kind": key[1], "name": key[2]})
            taken.add(key)
            uids = [c["container_uid"] for c in pod.get("containers") or []]
            if len(set(uids)) != len(uids):
                raise refuse(codes.DUPLICATE_ITEM, "container_uid")
            rows.append((biz, pod, workload, node))
        ids = self._next_ids("pod", len(rows))
        for pid, (biz, pod, workload, node) in zip(ids, rows, strict=True):
            self._insert_pod(pid, biz, pod, workload, node)
        return {"ids": ids}

    def _insert_pod(self, pid: int, biz: int, pod: Mapping[str, Any], workload: Row,
                    node: Row) -> None:
        spec = pod["spec"]
        labels = pod.get("labels")
        if isinstance(labels, Mapping):
            labels = {k.replace(".", POD_LABEL_DOT): v for k, v in labels.items()}
        ref = {"kind": spec["ref"]["kind"], "name": workload["name"], "id": workload["id"]}
        extra = {k: v for k, v in pod.items() if k not in ("spec", "containers", "labels")}
        row = {**extra, "id": pid, "bk_biz_id": biz, "bk_cluster_id": spec["bk_cluster_id"],
               "cluster_uid": workload["cluster_uid"], "bk_namespace_id": spec["bk_namespace_id"],
               "namespace": workload["namespace"], "ref": ref, "bk_node_id": node["id"],
               "node_name": node["name"], "labels": labels,
               "bk_supplier_account": self.supplier_account}
        self.pods[pid] = row
        self._pod_keys.add((ref["id"], ref["kind"], row["name"]))
        node["has_pod"] = True
        containers = list(pod.get("containers") or [])
        cids = self._next_ids("container", len(containers))
        self._containers_of[pid] = list(cids)
        for cid, container in zip(cids, containers, strict=True):
            self.containers[cid] = {
                **container, "id": cid, "bk_pod_id": pid, "bk_biz_id": biz,
                "bk_cluster_id": spec["bk_cluster_id"], "bk_namespace_id": spec["bk_namespace_id"],
                "ref": ref, "bk_supplier_account": self.supplier_account}

    def list_pods(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/kube/pod` (filters may nest one level deeper than elsewhere)."""
        return self._list(self.pods.values(), body, max_depth=4)

    def list_containers(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/kube/container`, optionally of one pod (`bk_pod_id`)."""
        pod_id = body.get("bk_pod_id") or 0
        rows = [c for c in self.containers.values() if not pod_id or c["bk_pod_id"] == pod_id]
        return self._list(rows, body)

    def delete_pods(self, body: Mapping[str, Any]) -> None:
        """`DELETE /deletemany/kube/pod`: `{"data": [{bk_biz_id, ids}]}`, 200 ids in all."""
        groups = _items(body, "data", codes.MAX_PODS)
        total = 0
        doomed: list[int] = []
        for group in groups:
            _biz(group)
            ids = group.get("ids")
            if not isinstance(ids, list) or not ids:
                raise refuse(codes.PARAMS_NEED_SET, "ids")
            total += len(ids)
            if total > codes.MAX_PODS:
                raise refuse(codes.EXCEED_LIMIT, "pods", codes.MAX_PODS)
            doomed.extend(ids)
        for pid in doomed:
            row = self.pods.pop(pid, None)
            if row is not None:
                self._pod_keys.discard((row["ref"]["id"], row["ref"]["kind"], row["name"]))
                for cid in self._containers_of.pop(pid, ()):
                    self.containers.pop(cid, None)

    # -- shared -----------------------------------------------------------------------------------

    def _list(self, rows: Iterable[Row], body: Mapping[str, Any], *,
              max_depth: int = 3) -> dict[str, Any]:
        biz = _biz(body)
        mine = [row for row in rows if row.get("bk_biz_id") == biz]
        return select(mine, filter=body.get("filter"), page=body.get("page"),
                      fields=body.get("fields"), max_depth=max_depth)

    @staticmethod
    def _update_data(body: Mapping[str, Any], editable: Any, *,
                     code: int = codes.PARAMS_NEED_SET) -> Row:
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise refuse(code, "data")
        for field in data:
            if not editable(field):
                raise refuse(codes.PARAMS_IS_INVALID, field)
        return dict(data)

    def snapshot(self) -> dict[str, Any]:
        """Every table, for comparing two models (the differential test)."""
        return {"clusters": self.clusters, "namespaces": self.namespaces, "nodes": self.nodes,
                "workloads": {k: t for k, t in self.workloads.items() if t}, "pods": self.pods,
                "containers": self.containers, "container_pods": self.container.pods}


def _check_pod(pod: Mapping[str, Any]) -> None:
    """The per-pod checks of `CreatePodsOption.Validate`, in bk-cmdb's order."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        raise refuse(codes.PARAMS_IS_INVALID, "cluster id must be set")
    ref = spec.get("ref") if isinstance(spec.get("ref"), Mapping) else {}
    for field, text in (("bk_cluster_id", "cluster id must be set"),
                        ("bk_namespace_id", "namespace id must be set"),
                        ("bk_node_id", "node id must be set")):
        if not isinstance(spec.get(field), int) or not spec[field]:
            raise refuse(codes.PARAMS_IS_INVALID, text)
    if not ref.get("kind") or not isinstance(ref.get("id"), int) or not ref["id"]:
        raise refuse(codes.PARAMS_IS_INVALID, "workload must be set")
    if ref["kind"] not in codes.WORKLOAD_KINDS:
        raise refuse(codes.PARAMS_IS_INVALID, "workload is illegal type")
    if not pod.get("bk_host_id"):
        raise refuse(codes.PARAMS_NEED_SET, "host id")
    if not isinstance(pod.get("name"), str) or not pod["name"]:
        raise refuse(codes.PARAMS_NEED_SET, "pod name")
    if not isinstance(pod.get("operator"), list) or not pod["operator"]:
        raise refuse(codes.PARAMS_NEED_SET, "pod operator")
    for container in pod.get("containers") or []:
        if not isinstance(container, Mapping) or not container.get("name"):
            raise refuse(codes.PARAMS_NEED_SET, "container name")
        if not container.get("container_uid"):
            raise refuse(codes.PARAMS_IS_INVALID, "container_uid")
        if not isinstance(container.get("image"), str):
            raise refuse(codes.PARAMS_IS_INVALID, "image")
