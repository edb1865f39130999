"""The kube ("container") model of bk-cmdb ≥ 3.12: clusters, namespaces, nodes, workloads, pods.

Two layers per type, for two users:
- `batch_*` methods are one request each, named after the gateway resource: input over
  bk-cmdb's limit for the type is refused locally (`ValueError`), a 1199014 is raised as
  `DuplicateError`. The differential test drives these against the reference model.
- `create_*`, `list_*`, `update_*`, `delete_*` are what a level-triggered pusher calls: any
  number of objects, chunked to `min(batch_size, bk-cmdb's limit)`; creates are idempotent
  and answer `{unique key: id}` (see `batching.create_all`); lists page through everything of
  one cluster and answer records carrying their keys and ids; deletes take ids and succeed for
  ids already gone.

Dependency order is the caller's: create cluster → namespaces → nodes → workloads → pods,
delete in reverse; bk-cmdb refuses a delete while anything below still refers to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import codes
from .batching import all_of, check_limit, chunks, create_all, list_all, list_in, rule
from .errors import DuplicateError, RejectedError
from .transport import Endpoint, Transport
from .types import (
    ClusterSpec,
    KubeCluster,
    KubeNamespace,
    KubeNode,
    KubePod,
    KubeWorkload,
    NamespaceKey,
    NamespaceSpec,
    NodeKey,
    NodeSpec,
    PodKey,
    PodSpec,
    WorkloadKey,
    WorkloadSpec,
)

K = "/api/v3"
CREATE_CLUSTER = Endpoint("create_kube_cluster", "POST", f"{K}/create/kube/cluster")
LIST_CLUSTERS = Endpoint("list_kube_cluster", "POST", f"{K}/findmany/kube/cluster")
DELETE_CLUSTERS = Endpoint("batch_delete_kube_cluster", "DELETE", f"{K}/delete/kube/cluster")
CREATE_NAMESPACES = Endpoint("batch_create_kube_namespace", "POST",
                             f"{K}/createmany/kube/namespace")
LIST_NAMESPACES = Endpoint("list_kube_namespace", "POST", f"{K}/findmany/kube/namespace")
UPDATE_NAMESPACES = Endpoint("batch_update_kube_namespace", "PUT",
                             f"{K}/updatemany/kube/namespace")
DELETE_NAMESPACES = Endpoint("batch_delete_kube_namespace", "DELETE",
                             f"{K}/deletemany/kube/namespace")
CREATE_NODES = Endpoint("batch_create_kube_node", "POST", f"{K}/createmany/kube/node")
LIST_NODES = Endpoint("list_kube_node", "POST", f"{K}/findmany/kube/node")
UPDATE_NODES = Endpoint("batch_update_kube_node", "PUT", f"{K}/updatemany/kube/node")
DELETE_NODES = Endpoint("batch_delete_kube_node", "DELETE", f"{K}/deletemany/kube/node")
CREATE_WORKLOADS = Endpoint("batch_create_kube_workload", "POST",
                            f"{K}/createmany/kube/workload/{{kind}}")
LIST_WORKLOADS = Endpoint("list_kube_workload", "POST", f"{K}/findmany/kube/workload/{{kind}}")
UPDATE_WORKLOADS = Endpoint("batch_update_kube_workload", "PUT",
                            f"{K}/updatemany/kube/workload/{{kind}}")
DELETE_WORKLOADS = Endpoint("batch_delete_kube_workload", "DELETE",
                            f"{K}/deletemany/kube/workload/{{kind}}")
CREATE_PODS = Endpoint("batch_create_kube_pod", "POST", f"{K}/createmany/kube/pod")
LIST_PODS = Endpoint("list_kube_pod", "POST", f"{K}/findmany/kube/pod")
DELETE_PODS = Endpoint("batch_delete_kube_pod", "DELETE", f"{K}/deletemany/kube/pod")


def _ids(data: Any, what: str) -> list[int]:
    ids = data.get("ids") if isinstance(data, Mapping) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise RejectedError(what, "the answer has no ids")
    return ids


def _kind(kind: str) -> str:
    if kind not in codes.WORKLOAD_KINDS:
        raise ValueError(f"unknown bk-cmdb workload kind {kind!r}; one of "
                         f"{', '.join(codes.WORKLOAD_KINDS)}")
    return kind


class KubeApi:
    """bk-cmdb's kube routes over one `Transport`."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._batch = transport.settings.limit

    # -- clusters ---------------------------------------------------------------------------------

    async def create_cluster(self, spec: ClusterSpec) -> int:
        """`create_kube_cluster`: one request; its id. Raises `DuplicateError` if the uid exists."""
        body = {"bk_biz_id": spec.biz_id, "name": spec.name, "uid": spec.uid, "type": spec.type,
                "scheduling_engine": spec.scheduling_engine}
        if spec.version:
            body["version"] = spec.version
        data = await self._t.call(CREATE_CLUSTER, body, write=True)
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), int):
            raise RejectedError(CREATE_CLUSTER.name, "the answer has no id")
        return int(data["id"])

    async def ensure_cluster(self, spec: ClusterSpec) -> KubeCluster:
        """The cluster with `spec.uid`, created if absent (idempotent)."""
        try:
            await self.create_cluster(spec)
        except DuplicateError:
            pass
        found = await self.list_clusters(spec.biz_id, uids=[spec.uid])
        if not found:
            raise RejectedError(CREATE_CLUSTER.name,
                                f"uid {spec.uid!r} exists, but not in business {spec.biz_id}")
        return found[0]

    async def list_clusters(self, biz_id: int, *, uids: Iterable[str] | None = None,
                            ids: Iterable[int] | None = None) -> list[KubeCluster]:
        """A business's clusters, all or those with the given uids or ids (10 per request)."""
        async def fetch(field: str, values: list[Any]) -> list[KubeCluster]:
            body = {"bk_biz_id": biz_id, "filter": all_of(rule(field, "in", values))}
            return [KubeCluster.parse(r) for r in await list_all(self._t, LIST_CLUSTERS, body)]
        if uids is None and ids is None:
            rows = await list_all(self._t, LIST_CLUSTERS, {"bk_biz_id": biz_id})
            return [KubeCluster.parse(r) for r in rows]
        found: list[KubeCluster] = []
        if uids is not None:
            found += await list_in(uids, lambda part: fetch("uid", part),
                                   size=codes.MAX_CLUSTER_IDS)
        if ids is not None:
            found += await list_in(ids, lambda part: fetch("id", part),
                                   size=codes.MAX_CLUSTER_IDS)
        return found

    async def delete_clusters(self, biz_id: int, ids: Iterable[int]) -> None:
        """Delete clusters that still exist (bk-cmdb refuses ids that match nothing)."""
        present = [c.id for c in await self.list_clusters(biz_id, ids=ids)]
        for part in chunks(present, codes.MAX_CLUSTER_IDS):
            await self._t.call(DELETE_CLUSTERS, {"bk_biz_id": biz_id, "ids": list(part)})

    # -- namespaces -------------------------------------------------------------------------------

    async def batch_create_namespaces(self, biz_id: int,
                                      specs: Sequence[NamespaceSpec]) -> list[int]:
        """`batch_create_kube_namespace`: one request; ids in input order."""
        check_limit(CREATE_NAMESPACES.name, len(specs), codes.MAX_NAMESPACES)
        data = [{"bk_cluster_id": s.cluster_id, "name": s.name, "labels": dict(s.labels)}
                for s in specs]
        answer = await self._t.call(CREATE_NAMESPACES, {"bk_biz_id": biz_id, "data": data},
                                    write=True)
        return _ids(answer, CREATE_NAMESPACES.name)

    async def create_namespaces(
            self, biz_id: int, specs: Iterable[NamespaceSpec], *,
            adopted: dict[NamespaceKey, KubeNamespace] | None = None) -> dict[NamespaceKey, int]:
        """Create namespaces (existing ones adopted, into `adopted`); `{(cluster_id, name): id}`."""
        async def find(chunk: Sequence[NamespaceSpec]) -> dict[Any, KubeNamespace]:
            found = {}
            for cluster in {s.cluster_id for s in chunk}:
                names = [s.name for s in chunk if s.cluster_id == cluster]
                found.update({n.key: n for n in await self.list_namespaces(
                    biz_id, cluster, names=names)})
            return found
        return await create_all(
            specs, limit=self._batch(codes.MAX_NAMESPACES), find=find, what="namespaces",
            send=lambda chunk: self.batch_create_namespaces(biz_id, chunk), adopted=adopted)

    async def list_namespaces(self, biz_id: int, cluster_id: int, *,
                              names: Iterable[str] | None = None) -> list[KubeNamespace]:
        """A cluster's namespaces (all, or those named)."""
        return [KubeNamespace.parse(r) for r in await self._list(
            LIST_NAMESPACES, biz_id, rule("bk_cluster_id", "equal", cluster_id), names)]

    async def update_namespaces(self, biz_id: int, ids: Iterable[int],
                                data: Mapping[str, Any]) -> None:
        """Set the same editable fields (`labels`, `resource_quotas`) on every id."""
        for part in chunks(list(ids), self._batch(codes.MAX_NAMESPACES)):
            await self._t.call(UPDATE_NAMESPACES,
                               {"bk_biz_id": biz_id, "ids": list(part), "data": dict(data)})

    async def delete_namespaces(self, biz_id: int, ids: Iterable[int]) -> None:
        """Delete namespaces by id (their pods and workloads must be gone first)."""
        for part in chunks(list(ids), self._batch(codes.MAX_NAMESPACES)):
            await self._t.call(DELETE_NAMESPACES, {"bk_biz_id": biz_id, "ids": list(part)})

    # -- nodes ------------------------------------------------------------------------------------

    async def batch_create_nodes(self, biz_id: int, specs: Sequence[NodeSpec]) -> list[int]:
        """`batch_create_kube_node`: one request of at most 100 nodes; ids in input order."""
        check_limit(CREATE_NODES.name, len(specs), codes.MAX_NODES)
        data = [{"bk_cluster_id": s.cluster_id, "bk_host_id": s.host_id, "name": s.name,
                 "internal_ip": list(s.internal_ip), "labels": dict(s.labels),
                 "unschedulable": s.unschedulable} for s in specs]
        answer = await self._t.call(CREATE_NODES, {"bk_biz_id": biz_id, "data": data},
                                    write=True)
        return _ids(answer, CREATE_NODES.name)

    async def create_nodes(self, biz_id: int, specs: Iterable[NodeSpec], *,
                           adopted: dict[NodeKey, KubeNode] | None = None) -> dict[NodeKey, int]:
        """Create nodes (existing ones adopted, into `adopted`); `{(cluster_id, name): id}`."""
        async def find(chunk: Sequence[NodeSpec]) -> dict[Any, KubeNode]:
            found = {}
            for cluster in {s.cluster_id for s in chunk}:
                names = [s.name for s in chunk if s.cluster_id == cluster]
                found.update({n.key: n for n in await self.list_nodes(
                    biz_id, cluster, names=names)})
            return found
        return await create_all(
            specs, limit=self._batch(codes.MAX_NODES), find=find, what="nodes",
            send=lambda chunk: self.batch_create_nodes(biz_id, chunk), adopted=adopted)

    async def list_nodes(self, biz_id: int, cluster_id: int, *,
                         names: Iterable[str] | None = None) -> list[KubeNode]:
        """A cluster's nodes (all, or those named)."""
        return [KubeNode.parse(r) for r in await self._list(
            LIST_NODES, biz_id, rule("bk_cluster_id", "equal", cluster_id), names)]

    async def update_nodes(self, biz_id: int, ids: Iterable[int],
                           data: Mapping[str, Any]) -> None:
        """Set the same editable fields (labels, unschedulable, internal_ip …) on every id."""
        for part in chunks(list(dict.fromkeys(ids)), self._batch(codes.MAX_NODES)):
            await self._t.call(UPDATE_NODES,
                               {"bk_biz_id": biz_id, "ids": list(part), "data": dict(data)})

    async def delete_nodes(self, biz_id: int, ids: Iterable[int]) -> None:
        """Delete nodes by id (their pods must be gone first)."""
        for part in chunks(list(ids), self._batch(codes.MAX_NODES)):
            await self._t.call(DELETE_NODES, {"bk_biz_id": biz_id, "ids": list(part)})

    # -- workloads --------------------------------------------------------------------------------

    async def batch_create_workloads(self, biz_id: int, kind: str,
                                     specs: Sequence[WorkloadSpec]) -> list[int]:
        """`batch_create_kube_workload`: one request of one kind; ids in input order."""
        check_limit(CREATE_WORKLOADS.name, len(specs), codes.MAX_WORKLOADS)
        data = []
        for s in specs:
            if s.kind != kind:
                raise ValueError(f"workload {s.name!r} is a {s.kind}, not a {kind}")
            item: dict[str, Any] = {"bk_namespace_id": s.namespace_id, "name": s.name,
                                    "labels": dict(s.labels)}
            if s.replicas is not None:
                item["replicas"] = s.replicas
            data.append(item)
        answer = await self._t.call(CREATE_WORKLOADS,
                                    {"bk_biz_id": biz_id, "kind": kind, "data": data},
                                    params={"kind": _kind(kind)}, write=True)
        return _ids(answer, CREATE_WORKLOADS.name)

    async def create_workloads(
            self, biz_id: int, specs: Iterable[WorkloadSpec], *,
            adopted: dict[WorkloadKey, KubeWorkload] | None = None) -> dict[WorkloadKey, int]:
        """Create workloads of any kinds (existing ones adopted, into `adopted`);
        `{(kind, ns_id, name): id}`."""
        by_kind: dict[str, list[WorkloadSpec]] = {}
        for spec in specs:
            by_kind.setdefault(_kind(spec.kind), []).append(spec)
        created: dict[WorkloadKey, int] = {}
        for kind, group in by_kind.items():
            async def find(chunk: Sequence[WorkloadSpec],
                           kind: str = kind) -> dict[Any, KubeWorkload]:
                found = {}
                for ns in {s.namespace_id for s in chunk}:
                    names = [s.name for s in chunk if s.namespace_id == ns]
                    found.update({w.key: w for w in await self.list_workloads(
                        biz_id, kind, namespace_id=ns, names=names)})
                return found

            async def send(chunk: Sequence[WorkloadSpec], kind: str = kind) -> list[int]:
                return await self.batch_create_workloads(biz_id, kind, chunk)
            created.update(await create_all(group, limit=self._batch(codes.MAX_WORKLOADS),
                                            find=find, send=send, what=f"{kind} workloads",
                                            adopted=adopted))
        return created

    async def list_workloads(self, biz_id: int, kind: str, *, cluster_id: int | None = None,
                             namespace_id: int | None = None,
                             names: Iterable[str] | None = None) -> list[KubeWorkload]:
        """Workloads of one kind in a cluster or a namespace (all, or those named)."""
        if namespace_id is not None:
            scope = rule("bk_namespace_id", "equal", namespace_id)
        elif cluster_id is not None:
            scope = rule("bk_cluster_id", "equal", cluster_id)
        else:
            raise ValueError("list_workloads needs cluster_id or namespace_id")
        rows = await self._list(LIST_WORKLOADS, biz_id, scope, names,
                                params={"kind": _kind(kind)})
        return [KubeWorkload.parse(kind, r) for r in rows]

    async def update_workloads(self, biz_id: int, kind: str, ids: Iterable[int],
                               data: Mapping[str, Any]) -> None:
        """Set the same editable fields (labels, replicas …) on every id (199 a request)."""
        limit = self._batch(codes.MAX_WORKLOAD_UPDATE_IDS)
        for part in chunks(list(ids), limit):
            await self._t.call(UPDATE_WORKLOADS, {"bk_biz_id": biz_id, "kind": kind,
                                                  "ids": list(part), "data": dict(data)},
                               params={"kind": _kind(kind)})

    async def delete_workloads(self, biz_id: int, kind: str, ids: Iterable[int]) -> None:
        """Delete workloads of one kind by id (their pods must be gone first)."""
        for part in chunks(list(ids), self._batch(codes.MAX_WORKLOADS)):
            await self._t.call(DELETE_WORKLOADS,
                               {"bk_biz_id": biz_id, "kind": kind, "ids": list(part)},
                               params={"kind": _kind(kind)})

    # -- pods -------------------------------------------------------------------------------------

    async def batch_create_pods(self, specs: Sequence[PodSpec]) -> list[int]:
        """`batch_create_kube_pod`: one request of at most 200 pods; ids in input order."""
        check_limit(CREATE_PODS.name, len(specs), codes.MAX_PODS)
        operator = [self._t.settings.username]
        groups: dict[int, list[dict[str, Any]]] = {}
        for s in specs:
            groups.setdefault(s.biz_id, []).append({
                "spec": {"bk_cluster_id": s.cluster_id, "bk_namespace_id": s.namespace_id,
                         "bk_node_id": s.node_id, "ref": {"kind": s.ref_kind, "id": s.ref_id}},
                "bk_host_id": s.host_id, "name": s.name, "ip": s.ip, "labels": dict(s.labels),
                "operator": list(s.operator) or operator,
                "containers": [{"name": c.name, "image": c.image,
                                "container_uid": c.container_uid} for c in s.containers]})
        # bk-cmdb answers ids in body order, which is grouped by business
        ordered = [s for biz in groups for s in specs if s.biz_id == biz]
        if ordered != list(specs):
            raise ValueError("pods of several businesses must be grouped by business")
        body = {"data": [{"bk_biz_id": biz, "pods": pods} for biz, pods in groups.items()]}
        return _ids(await self._t.call(CREATE_PODS, body, write=True), CREATE_PODS.name)

    async def create_pods(self, specs: Iterable[PodSpec], *,
                          adopted: dict[PodKey, KubePod] | None = None) -> dict[PodKey, int]:
        """Create pods (existing ones adopted, into `adopted`); `{(ref_kind, ref_id, name): id}`."""
        ordered = sorted(specs, key=lambda s: s.biz_id)

        async def find(chunk: Sequence[PodSpec]) -> dict[Any, KubePod]:
            found = {}
            for biz, cluster in {(s.biz_id, s.cluster_id) for s in chunk}:
                names = [s.name for s in chunk if (s.biz_id, s.cluster_id) == (biz, cluster)]
                found.update({p.key: p for p in await self.list_pods(
                    biz, cluster, names=names)})
            return found
        return await create_all(ordered, limit=self._batch(codes.MAX_PODS), find=find,
                                send=self.batch_create_pods, what="pods", adopted=adopted)

    async def list_pods(self, biz_id: int, cluster_id: int, *,
                        names: Iterable[str] | None = None) -> list[KubePod]:
        """A cluster's pods (all, or those named); label keys come back with their dots."""
        return [KubePod.parse(r) for r in await self._list(
            LIST_PODS, biz_id, rule("bk_cluster_id", "equal", cluster_id), names)]

    async def delete_pods(self, biz_id: int, ids: Iterable[int]) -> None:
        """Delete pods (and their containers) by id."""
        for part in chunks(list(ids), self._batch(codes.MAX_PODS)):
            await self._t.call(DELETE_PODS,
                               {"data": [{"bk_biz_id": biz_id, "ids": list(part)}]})

    # -- shared -----------------------------------------------------------------------------------

    async def _list(self, endpoint: Endpoint, biz_id: int, scope: dict[str, Any],
                    names: Iterable[str] | None, *,
                    params: Mapping[str, object] | None = None) -> list[dict[str, Any]]:
        async def fetch(part: list[str] | None) -> list[dict[str, Any]]:
            rules = [scope] if part is None else [scope, rule("name", "in", part)]
            return await list_all(self._t, endpoint,
                                  {"bk_biz_id": biz_id, "filter": all_of(*rules)}, params=params)
        if names is None:
            return await fetch(None)
        return await list_in(names, fetch)
