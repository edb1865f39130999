"""Differential test: the client over HTTP against the simulator, versus the reference model
called directly with bodies this test builds itself from docs/bkcmdb-api.md.

Each seeded random sequence mixes valid and invalid single-request operations (duplicates,
missing references, foreign businesses and hosts, deletes of referred objects, repeated
container uids) on small name pools, so clashes are frequent. After every operation both
sides must agree on the outcome — the ids created, or bk-cmdb's error code — and at the end
on every table, row for row, and on what the client lists. A difference is a bug in the
client's bodies or envelope handling, or in the simulator's translation of HTTP to the model.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from bkcmdb_support import BIZ, OTHER_BIZ

from synchronizer.bkcmdb import (
    BkCmdbClient,
    BkCmdbError,
    BkCmdbModel,
    ClusterSpec,
    ContainerSpec,
    NamespaceSpec,
    NodeSpec,
    PodSpec,
    WorkloadSpec,
)
from synchronizer.bkcmdb.codes import Refusal
from synchronizer.bkcmdb.simulator import BkCmdbSimulator

SEEDS = range(12)
STEPS = 80
KINDS = ("deployment", "job", "pods")
NAMES = ("a", "b", "c", "d")
Outcome = tuple[str, Any]
Op = tuple[str, Callable[[BkCmdbClient], Awaitable[Any]], Callable[[BkCmdbModel], Any]]


def _seed_topology(model: BkCmdbModel) -> None:
    model.hosts.add_business(BIZ)
    model.hosts.add_business(OTHER_BIZ)
    for i in range(3):
        model.hosts.add_host(f"10.1.0.{i + 1}", biz_id=BIZ)
    model.hosts.add_host("10.9.0.1", biz_id=OTHER_BIZ)


class Generator:
    """Random operations over ids that exist (mostly) or do not (sometimes)."""

    def __init__(self, rng: random.Random, model: BkCmdbModel) -> None:
        self.rng = rng
        self.model = model

    def pick(self, ids: Any, missing: int = 999) -> int:
        pool = list(ids)
        return self.rng.choice(pool) if pool and self.rng.random() < 0.95 else missing

    def biz(self) -> int:
        return BIZ if self.rng.random() < 0.95 else OTHER_BIZ

    def labels(self) -> dict[str, str]:
        return self.rng.choice([{}, {"app": "x"}, {"app.kubernetes.io/name": "y"}])

    def op(self) -> Op:
        m, r = self.model, self.rng
        choice = r.choice(["cluster", "ns", "ns", "node", "node", "wl", "wl", "pod", "pod", "pod",
                           "upd_ns", "upd_node", "upd_wl", "del_ns", "del_node", "del_wl",
                           "del_pod"])
        biz = self.biz()
        if choice == "cluster":
            uid = r.choice(("c1", "c2", "c3"))
            spec = ClusterSpec(uid=uid, name=uid, biz_id=biz)
            body = {"bk_biz_id": biz, "name": uid, "uid": uid, "type": "INDEPENDENT_CLUSTER",
                    "scheduling_engine": "k8s"}
            return (choice, lambda c: c.kube.create_cluster(spec),
                    lambda mm: mm.create_cluster(body)["id"])
        if choice == "ns":
            items = [(self.pick(m.clusters), r.choice(NAMES), self.labels())
                     for _ in range(r.randint(1, 3))]
            specs = [NamespaceSpec(cluster_id=c, name=n, labels=lb) for c, n, lb in items]
            body = {"bk_biz_id": biz, "data": [{"bk_cluster_id": c, "name": n, "labels": lb}
                                               for c, n, lb in items]}
            return (choice, lambda c: c.kube.batch_create_namespaces(biz, specs),
                    lambda mm: mm.create_namespaces(body)["ids"])
        if choice == "node":
            hosts = (1, 2, 3) if r.random() < 0.85 else (4, 77)
            items = [(self.pick(m.clusters), r.choice(hosts), r.choice(NAMES))
                     for _ in range(r.randint(1, 2))]
            specs = [NodeSpec(cluster_id=c, host_id=h, name=n, internal_ip=(f"10.1.0.{h}",))
                     for c, h, n in items]
            body = {"bk_biz_id": biz, "data": [
                {"bk_cluster_id": c, "bk_host_id": h, "name": n, "internal_ip": [f"10.1.0.{h}"],
                 "labels": {}, "unschedulable": False} for c, h, n in items]}
            return (choice, lambda c: c.kube.batch_create_nodes(biz, specs),
                    lambda mm: mm.create_nodes(body)["ids"])
        if choice == "wl":
            kind = r.choice(KINDS)
            items = [(self.pick(m.namespaces), r.choice(NAMES)) for _ in range(r.randint(1, 3))]
            specs = [WorkloadSpec(kind=kind, namespace_id=ns, name=n, replicas=2)
                     for ns, n in items]
            body = {"bk_biz_id": biz, "kind": kind, "data": [
                {"bk_namespace_id": ns, "name": n, "labels": {}, "replicas": 2}
                for ns, n in items]}
            return (choice, lambda c: c.kube.batch_create_workloads(biz, kind, specs),
                    lambda mm: mm.create_workloads(kind, body)["ids"])
        if choice == "pod":
            return self._pods(biz)
        if choice.startswith("upd_"):
            return self._update(choice, biz)
        return self._delete(choice, biz)

    def _pods(self, biz: int) -> Op:
        m, r = self.model, self.rng
        specs, raw = [], []
        for _ in range(r.randint(1, 2)):
            kind = r.choice([k for k in KINDS if m.workloads[k]] or KINDS)
            wid = self.pick(m.workloads[kind])
            wl = m.workloads[kind].get(wid, {})
            ns = wl.get("bk_namespace_id", 5) if r.random() < 0.95 else self.pick(m.namespaces)
            cluster = wl.get("bk_cluster_id", 5)
            node = self.pick([i for i, n in m.nodes.items() if n["bk_cluster_id"] == cluster]
                             or m.nodes)
            name, labels = r.choice(NAMES), self.labels()
            uids = [r.choice(("u1", "u2", "u3")) for _ in range(r.randint(0, 2))]
            specs.append(PodSpec(
                biz_id=biz, cluster_id=cluster, namespace_id=ns, node_id=node, host_id=1,
                ref_kind=kind, ref_id=wid, name=name, labels=labels,
                containers=tuple(ContainerSpec(name=f"c{i}", image="img", container_uid=u)
                                 for i, u in enumerate(uids))))
            raw.append({"spec": {"bk_cluster_id": cluster, "bk_namespace_id": ns,
                                 "bk_node_id": node, "ref": {"kind": kind, "id": wid}},
                        "bk_host_id": 1, "name": name, "ip": "", "labels": labels,
                        "operator": ["admin"],
                        "containers": [{"name": f"c{i}", "image": "img", "container_uid": u}
                                       for i, u in enumerate(uids)]})
        body = {"data": [{"bk_biz_id": biz, "pods": raw}]}
        return ("pod", lambda c: c.kube.batch_create_pods(specs),
                lambda mm: mm.create_pods(body)["ids"])

    def _update(self, choice: str, biz: int) -> Op:
        m, r = self.model, self.rng
        if choice == "upd_ns":
            ids = [self.pick(m.namespaces)]
            data: dict[str, Any] = r.choice([{"labels": {"v": str(r.random())}}, {"name": "x"}])
            body = {"bk_biz_id": biz, "ids": ids, "data": data}
            return (choice, lambda c: c.kube.update_namespaces(biz, ids, data),
                    lambda mm: mm.update_namespaces(body))
        if choice == "upd_node":
            ids = list(dict.fromkeys(self.pick(m.nodes) for _ in range(2)))
            data = r.choice([{"unschedulable": True}, {"bk_host_id": 2}])
            body = {"bk_biz_id": biz, "ids": ids, "data": data}
            return (choice, lambda c: c.kube.update_nodes(biz, ids, data),
                    lambda mm: mm.update_nodes(body))
        kind = r.choice(KINDS)
        ids = [self.pick(m.workloads[kind])]
        data = {"replicas": r.randint(0, 9)}
        body = {"bk_biz_id": biz, "kind": kind, "ids": ids, "data": data}
        return (choice, lambda c: c.kube.update_workloads(biz, kind, ids, data),
                lambda mm: mm.update_workloads(kind, body))

    def _delete(self, choice: str, biz: int) -> Op:
        m, r = self.model, self.rng
        if choice == "del_ns":
            ids = [self.pick(m.namespaces)]
            body = {"bk_biz_id": biz, "ids": ids}
            return (choice, lambda c: c.kube.delete_namespaces(biz, ids),
                    lambda mm: mm.delete_namespaces(body))
        if choice == "del_node":
            ids = [self.pick(m.nodes)]
            body = {"bk_biz_id": biz, "ids": ids}
            return (choice, lambda c: c.kube.delete_nodes(biz, ids),
                    lambda mm: mm.delete_nodes(body))
        if choice == "del_wl":
            kind = r.choice(KINDS)
            ids = [self.pick(m.workloads[kind])]
            body = {"bk_biz_id": biz, "kind": kind, "ids": ids}
            return (choice, lambda c: c.kube.delete_workloads(biz, kind, ids),
                    lambda mm: mm.delete_workloads(kind, body))
        ids = [self.pick(m.pods) for _ in range(r.randint(1, 3))]
        body = {"data": [{"bk_biz_id": biz, "ids": ids}]}
        return (choice, lambda c: c.kube.delete_pods(biz, ids), lambda mm: mm.delete_pods(body))


async def _via_client(call: Callable[[BkCmdbClient], Awaitable[Any]],
                      client: BkCmdbClient) -> Outcome:
    try:
        return ("ok", await call(client))
    except BkCmdbError as exc:
        return ("error", exc.code)


def _via_model(call: Callable[[BkCmdbModel], Any], model: BkCmdbModel) -> Outcome:
    try:
        return ("ok", call(model))
    except Refusal as exc:
        return ("error", exc.code)


@pytest.mark.parametrize("seed", SEEDS)
async def test_client_over_http_matches_the_model_called_directly(
        seed: int, sim: BkCmdbSimulator, cmdb: BkCmdbClient) -> None:
    sim.model = BkCmdbModel()
    _seed_topology(sim.model)
    direct = BkCmdbModel()
    _seed_topology(direct)
    generator = Generator(random.Random(seed), direct)
    outcomes: list[str] = []
    for step in range(STEPS):
        name, over_http, on_model = generator.op()
        expected = _via_model(on_model, direct)
        got = await _via_client(over_http, cmdb)
        assert got == expected, f"seed {seed} step {step} ({name}): {got} != {expected}"
        outcomes.append(expected[0])
    assert sim.model.snapshot() == direct.snapshot()
    assert "ok" in outcomes and "error" in outcomes, "the sequence exercised both paths"

    for cluster in direct.clusters.values():
        biz, cid = cluster["bk_biz_id"], cluster["id"]
        listed_ns = {n.id: n.key for n in await cmdb.kube.list_namespaces(biz, cid)}
        assert listed_ns == {i: (r["bk_cluster_id"], r["name"]) for i, r in
                             direct.namespaces.items() if r["bk_cluster_id"] == cid}
        listed_pods = {p.id: p.key for p in await cmdb.kube.list_pods(biz, cid)}
        assert listed_pods == {i: (r["ref"]["kind"], r["ref"]["id"], r["name"]) for i, r in
                               direct.pods.items() if r["bk_cluster_id"] == cid}
