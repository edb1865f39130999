"""Helpers for the pusher tests: table rows of one cluster, a manual clock, the expected
bk-cmdb state computed independently of the pusher (the oracle), and what the simulator
holds in the same shape."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from synchronizer.bkcmdb import BkCmdbModel
from synchronizer.bkcmdb.pusher import MemoryDesiredState, Table

BIZ = 2
K8S_TO_BK = {"Deployment": "deployment", "StatefulSet": "statefulSet", "DaemonSet": "daemonSet",
             "Job": "job", "CronJob": "cronJob"}


def _j(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class Rows:
    """The tables of one cluster, written the way the product's store writes them."""

    cluster: str
    desired: MemoryDesiredState
    biz: int = BIZ

    def _put(self, table: Table, row: dict[str, Any]) -> dict[str, Any]:
        base = {"biz_id": self.biz, "checksum": "c", "query_at": "2025-01-01 00:00:00"}
        return self.desired.put(self.cluster, table, {**base, **row})

    def namespace(self, name: str, *, uid: str | None = None,
                  labels: Mapping[str, str] | None = None) -> str:
        uid = uid or f"ns-{name}"
        self._put(Table.NAMESPACES, {"uid": uid, "name": name, "labels": _j(labels or {}),
                                     "phase": "Active"})
        return uid

    def node(self, name: str, ip: str, *, uid: str | None = None,
             labels: Mapping[str, str] | None = None, unschedulable: int = 0,
             ready: str = "True", kubelet: str = "v1.30.1") -> str:
        uid = uid or f"node-{name}"
        self._put(Table.NODES, {"uid": uid, "name": name, "labels": _j(labels or {}),
                                "internal_ip": ip, "kubelet_version": kubelet, "ready": ready,
                                "unschedulable": unschedulable})
        return uid

    def workload(self, kind: str, namespace: str, name: str, *, uid: str | None = None,
                 replicas: int | None = 1, labels: Mapping[str, str] | None = None,
                 images: list[str] | None = None) -> str:
        uid = uid or f"wl-{kind}-{namespace}-{name}"
        self._put(Table.WORKLOADS, {"uid": uid, "name": name, "kind": kind,
                                    "namespace": namespace, "replicas": replicas,
                                    "labels": _j(labels or {}), "images": _j(images or [])})
        return uid

    def pod(self, namespace: str, name: str, *, node: str = "", uid: str | None = None,
            workload: tuple[str, str] | None = None, ip: str = "10.244.0.1",
            containers: list[tuple[str, str, str]] | None = None,
            labels: Mapping[str, str] | None = None, phase: str = "Running",
            set_name: str = "", module_name: str = "", host_ip: str = "") -> str:
        uid = uid or f"pod-{namespace}-{name}"
        if containers is None:
            containers = [("app", "nginx:1.25", f"containerd://{uid}-app")]
        kind, wname = workload or ("", "")
        self._put(Table.PODS, {
            "uid": uid, "name": name, "namespace": namespace, "node_name": node,
            "host_ip": host_ip, "pod_ip": ip, "phase": phase, "labels": _j(labels or {}),
            "containers": _j([{"name": c, "image": i, "container_id": d}
                              for c, i, d in containers]),
            "set_name": set_name, "module_name": module_name,
            "workload_kind": kind, "workload_name": wname})
        return uid

    def touch(self, table: Table, uid: str, **changes: Any) -> None:
        """Write a new version of a row (content changes as given)."""
        row = self.desired.get(self.cluster, table, uid)
        assert row is not None
        fresh = {k: v for k, v in row.items() if k != "resource_version"}
        self.desired.put(self.cluster, table, {**fresh, **changes})

    def delete(self, table: Table, uid: str) -> None:
        self.desired.delete(self.cluster, table, uid)


# -- the oracle -----------------------------------------------------------------------------------

def _labels(row: Mapping[str, Any]) -> dict[str, str]:
    return orjson.loads(row["labels"]) if row.get("labels") else {}


def expected_kube(desired: MemoryDesiredState, cluster: str,
                  hosts: Mapping[str, int]) -> dict[str, Any]:
    """What bk-cmdb should hold for `cluster`, from the rows alone (written independently of
    the pusher's mapping): objects by name, with their fields and parents by name."""
    nss = {r["name"]: r for r in desired.active(cluster, Table.NAMESPACES)}
    nodes = {r["name"]: r for r in desired.active(cluster, Table.NODES)
             if r["internal_ip"] in hosts}
    wls = {(K8S_TO_BK[r["kind"]], r["namespace"], r["name"]): r
           for r in desired.active(cluster, Table.WORKLOADS)
           if r["kind"] in K8S_TO_BK and r["namespace"] in nss}
    pods: dict[tuple[str, str], Any] = {}
    pods_wls: set[str] = set()
    for r in desired.active(cluster, Table.PODS):
        containers = orjson.loads(r["containers"])
        if r["namespace"] not in nss or r["node_name"] not in nodes:
            continue
        if not all(c["container_id"] for c in containers):
            continue
        bk = K8S_TO_BK.get(r["workload_kind"], "")
        if (bk, r["namespace"], r["workload_name"]) in wls:
            ref = (bk, r["workload_name"])
        else:
            ref = ("pods", "pods")
            pods_wls.add(r["namespace"])
        pods[(r["namespace"], r["name"])] = {
            "ref": ref, "node": r["node_name"], "ip": r["pod_ip"], "labels": _labels(r),
            "host": hosts[nodes[r["node_name"]]["internal_ip"]],
            "containers": sorted((c["name"], c["image"], c["container_id"].split("://")[-1])
                                 for c in containers)}
    return {
        "namespaces": {n: _labels(r) for n, r in nss.items()},
        "nodes": {n: (hosts[r["internal_ip"]], [r["internal_ip"]], _labels(r),
                      bool(r["unschedulable"])) for n, r in nodes.items()},
        "workloads": {**{k: (_labels(r), r["replicas"]) for k, r in wls.items()},
                      **{("pods", ns, "pods"): ({}, None) for ns in pods_wls}},
        "pods": pods,
    }


def actual_kube(model: BkCmdbModel, cluster: str) -> dict[str, Any]:
    """What the simulator holds for `cluster`, in the oracle's shape (duplicates would show
    up as a count mismatch, so those are returned too)."""
    clusters = [c for c in model.clusters.values() if c["uid"] == cluster]
    if not clusters:
        return {"namespaces": {}, "nodes": {}, "workloads": {}, "pods": {}, "count": 0}
    cid = clusters[0]["id"]
    nss = {i: r for i, r in model.namespaces.items() if r["bk_cluster_id"] == cid}
    nodes = {i: r for i, r in model.nodes.items() if r["bk_cluster_id"] == cid}
    wls = {(k, i): r for k, t in model.workloads.items() for i, r in t.items()
           if r["bk_cluster_id"] == cid}
    pods = {i: r for i, r in model.pods.items() if r["bk_cluster_id"] == cid}

    def containers(pid: int) -> list[tuple[str, str, str]]:
        return sorted((c["name"], c["image"], c["container_uid"])
                      for c in model.containers.values() if c["bk_pod_id"] == pid)
    return {
        "namespaces": {r["name"]: r.get("labels") or {} for r in nss.values()},
        "nodes": {r["name"]: (r["bk_host_id"], r["internal_ip"], r.get("labels") or {},
                              bool(r.get("unschedulable"))) for r in nodes.values()},
        "workloads": {(k, r["namespace"], r["name"]): (r.get("labels") or {}, r.get("replicas"))
                      for (k, _), r in wls.items()},
        "pods": {(r["namespace"], r["name"]): {
            "ref": (r["ref"]["kind"], r["ref"]["name"]), "node": r["node_name"], "ip": r["ip"],
            "labels": {k.replace("\\u002e", "."): v for k, v in (r.get("labels") or {}).items()},
            "host": r["bk_host_id"], "containers": containers(i)} for i, r in pods.items()},
        "count": len(nss) + len(nodes) + len(wls) + len(pods),
    }


def hosts_of(model: BkCmdbModel, biz: int = BIZ) -> dict[str, int]:
    """Inner IP → host id of the business's hosts."""
    return {h.inner_ip: h.id for h in model.hosts.hosts.values() if h.biz_id == biz}


# -- a manual clock -------------------------------------------------------------------------------

@dataclass
class ManualClock:
    """Wall time that moves only when a test says so; `sleep` waits for that."""

    now: float = 1_000_000.0
    _sleepers: list[tuple[float, int, asyncio.Future[None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


# -- one pusher against one simulator -------------------------------------------------------------

@dataclass
class World:
    """A simulator, the tables, a ledger and a pusher for cluster `c1` (and more)."""

    sim: Any
    client: Any
    desired: MemoryDesiredState
    ledger: Any
    pusher: Any
    rows: Rows

    def target(self, cluster: str = "c1", **kw: Any) -> Any:
        from synchronizer.bkcmdb.pusher import ClusterTarget
        return ClusterTarget(id=cluster, biz_id=kw.pop("biz_id", BIZ), **kw)

    async def push(self, mode: Any = None, cluster: str = "c1", **kw: Any) -> Any:
        from synchronizer.bkcmdb.pusher import PushMode
        return await self.pusher.push(self.target(cluster, **kw),
                                      mode=mode or PushMode.INCREMENTAL)

    async def converge(self, cluster: str = "c1", *, limit: int = 20, **kw: Any) -> Any:
        """Push until a push changes nothing, fails nothing and leaves nothing pending."""
        from synchronizer.bkcmdb.pusher import PushMode
        report = None
        for i in range(limit):
            report = await self.push(PushMode.FULL if i == 0 else PushMode.SWEEP, cluster, **kw)
            if report.error is None and not report.changed and not report.pending_total:
                return report
        raise AssertionError(f"no convergence: {report.summary() if report else None}")

    def expected(self, cluster: str = "c1") -> dict[str, Any]:
        return expected_kube(self.desired, cluster, hosts_of(self.sim.model))

    def actual(self, cluster: str = "c1") -> dict[str, Any]:
        found = actual_kube(self.sim.model, cluster)
        found.pop("count")
        return found

    def requests(self) -> int:
        return sum(self.sim.stats.requests.values())
