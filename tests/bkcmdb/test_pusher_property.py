"""Property: whatever the churn of the tables and the faults of bk-cmdb, once both stop the
pusher brings bk-cmdb to exactly what the rows say (the oracle in `pusher_support`, written
independently of the pusher's mapping), with no duplicate and no request over its limits.

Each seed is a random history: rows of every kind added, changed (fields bk-cmdb holds, and
status noise it does not), deleted and made again under a new uid; hosts and modules
appearing; objects deleted by hand in bk-cmdb; and between pushes, faults on random routes —
429, 5xx, `result: false` 1199002, connections cut after bk-cmdb applied a create (the
ambiguous write) or before. A small `batch_size` makes every push cut many batches. Then the
faults stop, and pushes run until one finds nothing to do."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from bkcmdb_support import BIZ, FakeTime, settings_for
from pusher_support import Rows, World

from synchronizer.bkcmdb import BkCmdbClient
from synchronizer.bkcmdb.pusher import (
    MemoryDesiredState,
    MemoryLedger,
    Pusher,
    PushMode,
    PushReport,
    Reason,
    Table,
)
from synchronizer.bkcmdb.simulator import BkCmdbSimulator

SEEDS = range(4)
STEPS = 40
BATCH = 7
IPS = [f"10.1.0.{i}" for i in range(1, 7)] + ["10.7.7.7"]
KINDS = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet"]
SCALED = {"Deployment", "StatefulSet", "ReplicaSet"}
"""Kinds with spec.replicas (the others' `replicas` column is NULL, always)."""
WRITE_ROUTES = {
    "kube": ["batch_create_kube_pod", "batch_delete_kube_pod", "batch_create_kube_namespace",
             "batch_create_kube_workload", "batch_create_kube_node",
             "batch_update_kube_workload", "batch_delete_kube_workload", "list_kube_pod",
             "list_biz_hosts", "create_kube_cluster"],
    "container": ["create_pod", "update_pod", "delete_pod", "list_pods",
                  "search_biz_inst_topo"],
}
WAITING = {Reason.NO_HOST, Reason.NO_NODE, Reason.NO_NAMESPACE, Reason.NOT_STARTED}


class Churn:
    """Random changes to the rows of one cluster, never two Active rows with one key."""

    def __init__(self, rows: Rows, rng: random.Random) -> None:
        self.rows, self.rng, self.gen = rows, rng, 0
        self.desired = rows.desired

    def active(self, table: Table) -> list[dict[str, Any]]:
        return self.desired.active(self.rows.cluster, table)

    def uid(self, prefix: str) -> str:
        self.gen += 1
        return f"{prefix}-{self.gen}"

    def labels(self) -> dict[str, str]:
        return {self.rng.choice(["app", "team", "a.b/c"]): self.rng.choice(["x", "y", "z"])
                for _ in range(self.rng.randint(0, 2))}

    def seed(self) -> None:
        """A starting cluster, so pods have somewhere to go."""
        for name in ("a", "b", "c"):
            self.rows.namespace(name, uid=self.uid(f"ns-{name}"))
        for i in range(4):
            self.rows.node(f"n{i}", IPS[i], uid=self.uid(f"n{i}"))
        for _ in range(4):
            self.add(Table.WORKLOADS)
        for _ in range(25):
            self.add_pod(["a", "b", "c"])

    def step(self) -> None:
        rng = self.rng
        table = rng.choice([Table.PODS] * 5 + [Table.NAMESPACES, Table.NODES] +
                           [Table.WORKLOADS] * 2)
        rows = self.active(table)
        action = rng.choice(["add", "add", "change", "noise", "delete"])
        if table in (Table.NAMESPACES, Table.NODES) and action == "delete" and \
                rng.random() < 0.5:
            action = "change"
        if action == "add" or not rows:
            self.add(table)
        elif action == "delete":
            self.rows.delete(table, rng.choice(rows)["uid"])
        elif action == "noise":
            row = rng.choice(rows)
            self.rows.touch(table, row["uid"], query_at=f"t{self.gen}", checksum=self.uid("c"),
                            **({"phase": rng.choice(["Pending", "Running"])}
                               if table is not Table.NODES else {"ready": "Unknown"}))
        else:
            self.change(table, rng.choice(rows))

    def add(self, table: Table) -> None:
        rng, rows = self.rng, self.rows
        namespaces = [r["name"] for r in self.active(Table.NAMESPACES)] + ["ghost-ns"]
        if table is Table.NAMESPACES:
            name = rng.choice(["a", "b", "c", "d"])
            if name not in namespaces:
                rows.namespace(name, uid=self.uid(f"ns-{name}"), labels=self.labels())
        elif table is Table.NODES:
            name = f"n{rng.randint(0, 5)}"
            if all(r["name"] != name for r in self.active(Table.NODES)):
                rows.node(name, rng.choice(IPS), uid=self.uid(name), labels=self.labels(),
                          unschedulable=rng.randint(0, 1))
        elif table is Table.WORKLOADS:
            kind, ns, name = rng.choice(KINDS), rng.choice(namespaces), f"w{rng.randint(0, 3)}"
            if all((r["kind"], r["namespace"], r["name"]) != (kind, ns, name)
                   for r in self.active(Table.WORKLOADS)):
                rows.workload(kind, ns, name, uid=self.uid("wl"), labels=self.labels(),
                              replicas=rng.choice([1, 3]) if kind in SCALED else None)
        else:
            for _ in range(rng.choice([1, 1, 2, 12])):
                self.add_pod(namespaces)

    def add_pod(self, namespaces: list[str]) -> None:
        rng = self.rng
        ns, name = rng.choice(namespaces), f"p{rng.randint(0, 30)}"
        if any((r["namespace"], r["name"]) == (ns, name) for r in self.active(Table.PODS)):
            return
        uid = self.uid("pod")
        workloads = [(r["kind"], r["name"]) for r in self.active(Table.WORKLOADS)
                     if r["namespace"] == ns]
        workload = rng.choice([*workloads, None, ("Deployment", "missing")])
        self.rows.pod(ns, name, uid=uid, node=rng.choice(["", "n0", "n1", "n2", "n3", "n4",
                                                          "n0", "n1", "n2", "n3"]),
                      workload=workload, labels=self.labels(), ip=f"10.244.9.{self.gen % 250}",
                      containers=[("app", "img:1", rng.choice([f"containerd://{uid}", ""])
                                   if rng.random() < 0.2 else f"containerd://{uid}")],
                      set_name=rng.choice(["", "web"]),
                      module_name=rng.choice(["nginx", "ghost"]))

    def change(self, table: Table, row: dict[str, Any]) -> None:
        rng = self.rng
        changes: dict[str, Any] = {"labels": orjson.dumps(self.labels()).decode()}
        if table is Table.NODES:
            if rng.random() < 0.5:
                changes["internal_ip"] = rng.choice(IPS)
            else:
                changes["unschedulable"] = rng.randint(0, 1)
        elif table is Table.WORKLOADS and row["kind"] in SCALED:
            changes["replicas"] = rng.choice([0, 2, 5])
        elif table is Table.PODS:
            changes["pod_ip"] = f"10.244.8.{rng.randint(0, 250)}"
            if rng.random() < 0.3:
                changes["containers"] = orjson.dumps([{"name": "app", "image": "img:2",
                                                       "container_id": f"cri-o://{row['uid']}"}
                                                      ]).decode()
        self.rows.touch(table, row["uid"], **changes)


def fault(sim: BkCmdbSimulator, rng: random.Random, api: str) -> None:
    route = rng.choice(WRITE_ROUTES[api])
    kind = rng.choice(["429", "5xx", "1199002", "cut", "cut_before"])
    count = rng.randint(1, 3)
    if kind == "429":
        sim.fail(kind="status", status=429, retry_after=1, route=route, count=count)
    elif kind == "5xx":
        sim.fail(kind="status", status=rng.choice([500, 502, 503, 504]), route=route,
                 count=count)
    elif kind == "1199002":
        sim.fail(kind="result", code=1199002, route=route, count=count)
    else:
        sim.fail(kind=kind, route=route, count=1)


def hand_delete(sim: BkCmdbSimulator, rng: random.Random, api: str) -> None:
    """Someone deletes a pod in bk-cmdb (the model, as its API would)."""
    if api == "kube" and sim.model.pods:
        sim.model.delete_pods({"data": [{"bk_biz_id": BIZ,
                                         "ids": [rng.choice(sorted(sim.model.pods))]}]})
    elif api == "container" and sim.model.container.pods:
        del sim.model.container.pods[rng.choice(sorted(sim.model.container.pods))]


def expected_container(world: World) -> dict[tuple[str, str], Any]:
    hosts = world.sim.model.hosts
    default = hosts.add_module(BIZ, "bkbcs", "bkbcs")
    modules = {(hosts.sets[s][1], name): mid for mid, (s, name) in hosts.modules.items()
               if hosts.sets[s][0] == BIZ}
    out = {}
    for r in world.desired.active("c1", Table.PODS):
        module = modules.get((r["set_name"], r["module_name"]), default) \
            if r["set_name"] and r["module_name"] else default
        out[(r["namespace"], r["name"])] = (r["uid"], r["pod_ip"], orjson.loads(r["labels"]),
                                            orjson.loads(r["containers"]), r["phase"], module)
    return out


def actual_container(world: World) -> dict[tuple[str, str], Any]:
    pods = [p for p in world.sim.model.container.pods.values() if p["bk_pod_cluster"] == "c1"]
    found = {(p["bk_pod_namespace"], p["bk_pod_name"]): (
        p["bk_pod_uuid"], p["bk_pod_ip"], orjson.loads(p["bk_pod_labels"]),
        orjson.loads(p["bk_pod_containers"]), p["bk_pod_status"], p["bk_module_id"])
        for p in pods}
    assert len(found) == len(pods), "a duplicate pod"
    return found


def quiet(report: PushReport) -> bool:
    return report.error is None and not report.changed and \
        set(report.pending) <= WAITING


@pytest.fixture(params=["kube", "container"])
async def churned(request: pytest.FixtureRequest, sim: BkCmdbSimulator,
                  fake_time: FakeTime) -> AsyncIterator[World]:
    settings = settings_for(sim, api=request.param, batch_size=BATCH, max_attempts=2)
    async with BkCmdbClient(settings, clock=fake_time.clock, sleep=fake_time.sleep) as client:
        desired, ledger = MemoryDesiredState(), MemoryLedger()
        yield World(sim=sim, client=client, desired=desired, ledger=ledger,
                    pusher=Pusher(client=client, desired=desired, ledger=ledger),
                    rows=Rows("c1", desired))


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_churn_and_faults_end_in_bk_cmdb_equal_to_the_tables(
        churned: World, fake_time: FakeTime, seed: int) -> None:
    world, sim, api = churned, churned.sim, churned.pusher.api
    rng = random.Random(seed)
    churn = Churn(world.rows, rng)
    churn.seed()
    for step in range(STEPS):
        for _ in range(rng.randint(1, 4)):
            churn.step()
        if rng.random() < 0.4:
            fault(sim, rng, api)
        if rng.random() < 0.05:
            hand_delete(sim, rng, api)
        if step == STEPS // 2:  # hosts and modules appear half-way
            sim.model.hosts.add_host("10.1.0.5", biz_id=BIZ)
            sim.model.hosts.add_module(BIZ, "web", "ghost")
            fake_time.now += 60
        mode = rng.choice([PushMode.INCREMENTAL] * 6 + [PushMode.SWEEP, PushMode.FULL])
        await world.push(mode)
    sim.faults.clear()
    for i in range(12):
        report = await world.push(PushMode.FULL if i == 0 else PushMode.INCREMENTAL)
        if quiet(report):
            break
    assert quiet(report), report.summary()
    if api == "kube":
        actual = world.actual()
        model = sim.model
        count = len(model.namespaces) + len(model.nodes) + len(model.pods) + sum(
            len(t) for t in model.workloads.values())
        assert count == sum(len(v) for v in actual.values()), "a duplicate object"
        assert actual == world.expected()
        assert sim.stats.requests["batch_create_kube_pod"] >= 5, "a history worth checking"
    else:
        assert actual_container(world) == expected_container(world)
        assert sim.stats.requests["create_pod"] >= 10, "a history worth checking"
    writes = {r: n for r, n in sim.stats.largest_batch.items() if not r.startswith("list")}
    assert writes and max(writes.values()) <= BATCH, writes
    assert (await world.push(PushMode.FULL)).changed == 0
