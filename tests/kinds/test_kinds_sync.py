"""Every kind end to end: the simulator's objects into their tables through a real instance.

Per resource (parametrised, not copied): create, update and delete through the watch; a
change made while the instance is down repaired by the next full sync; no drift per
`verify`. Then what must NOT happen: status-only noise (node heartbeats, ready-replica
counts, restart counts) writes zero rows. And TEST-MATRIX row 34: one kind refused (403)
in one cluster is an error for that kind of that cluster alone; it recovers when allowed.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from instance_support import caught_up, populated, running, settings_for

from reconciler import ClusterId
from synchronizer.cmdb import open_store
from synchronizer.kinds import KINDS
from synchronizer.simulator import Mix, Simulator
from synchronizer.tools.verify import run_verify

TABLE = {"pods": "pods", "nodes": "nodes", "namespaces": "namespaces",
         "deployments": "workloads", "statefulsets": "workloads", "daemonsets": "workloads",
         "jobs": "workloads", "cronjobs": "workloads"}
TIMEOUT = 60
EVERY_KIND = Mix(deployments=3, statefulsets=2, daemonsets=1, jobs=2, cronjobs=2, replicasets=1,
                 bare_pods=2)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def rows_of(dsn: str, cluster: str, resource: str) -> dict[str, dict[str, Any]]:
    kind = KINDS[TABLE[resource]]
    store = await open_store(dsn)
    try:
        table = store.table(kind, kind.resource(resource))
        return {r["uid"]: r for r in await table.rows(ClusterId(cluster))}
    finally:
        await store.close()


def an_object(sim: Simulator, cluster: str, resource: str) -> dict[str, Any]:
    """A live object of `resource` to change (a workload or a node the populate made)."""
    objects = sim.cluster(cluster).objects(resource)
    assert objects, f"the populated cluster has no {resource}"
    return objects[0]


def touch(obj: dict[str, Any]) -> None:
    obj["metadata"].setdefault("labels", {})["cmdb-test"] = "changed"


@pytest.mark.parametrize("resource", list(TABLE))
async def test_a_kind_follows_create_update_delete_and_a_missed_change(
        sim: Simulator, store_dsn: str, resource: str) -> None:
    cluster = await populated(sim, "k", 30, nodes=3, mix=EVERY_KIND)
    obj = an_object(sim, "k", resource)
    meta = obj["metadata"]
    ns, name = meta.get("namespace", ""), meta["name"]
    settings = settings_for(sim, store_dsn, ["k"])
    async with running(settings) as instance:
        await caught_up(instance, sim, ["k"])
        rows = await rows_of(store_dsn, "k", resource)
        assert rows[meta["uid"]]["state"] == "Active" and rows[meta["uid"]]["name"] == name
        cluster.update(ns, name, touch, resource=resource)
        await caught_up(instance, sim, ["k"])
        row = (await rows_of(store_dsn, "k", resource))[meta["uid"]]
        assert '"cmdb-test":"changed"' in row["labels"]
        copy_of = copy.deepcopy(obj)
        for key in ("uid", "resourceVersion", "creationTimestamp", "ownerReferences"):
            copy_of["metadata"].pop(key, None)
        copy_of["metadata"]["name"] = f"{name}-twin"
        created = cluster.create(copy_of, namespace=ns or None, resource=resource)
        await caught_up(instance, sim, ["k"])
        assert (await rows_of(store_dsn, "k", resource))[created["metadata"]["uid"]][
            "state"] == "Active"
    # while the instance is down: the last change of an object is lost to any watch
    cluster.delete(ns, f"{name}-twin", resource=resource)
    async with running(settings) as instance:
        await caught_up(instance, sim, ["k"])  # its first full sync repairs it
    rows = await rows_of(store_dsn, "k", resource)
    assert rows[created["metadata"]["uid"]]["state"] == "Deleted"
    report = await run_verify(settings, ["k"])
    assert report.exit_code == 0, report.as_json()
    assert report.clusters[0].kinds[TABLE[resource]] == {"missing": 0, "stale": 0, "extra": 0}


def written(instance: Any) -> float:
    """Rows written so far, over every kind (the `writes_total` counter)."""
    total = 0.0
    for metric in instance.metrics.registry.collect():
        if metric.name == "bkcmdb_sync_writes":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total")
                         and s.labels.get("result") == "written")
    return total


async def test_status_only_noise_writes_zero_rows(sim: Simulator, sqlite_dsn: str) -> None:
    """TEST-MATRIX row 35 (the tables' half): heartbeats, ready counts, restart counts."""
    await populated(sim, "n", 60, nodes=8, workloads=12)
    churn = sim.controllers("n", seed=4)
    async with running(settings_for(sim, sqlite_dsn, ["n"])) as instance:
        await caught_up(instance, sim, ["n"])
        before = written(instance)
        events_before = sum(r.status.events for r in
                            instance.controller.supervisor(ClusterId("n")).reconcilers.values())
        churn.step("heartbeats", 40)
        churn.step("workload_status", 20)
        churn.step("pod_restarts", 20)
        assert sum(churn.counts.noise.values()) >= 80 and not churn.counts.real
        await caught_up(instance, sim, ["n"])
        sup = instance.controller.supervisor(ClusterId("n"))
        assert sum(r.status.events for r in sup.reconcilers.values()) - events_before >= 80
        assert written(instance) == before  # every event seen, not one row written
        churn.step("nodes", 3)  # a real change still writes
        await caught_up(instance, sim, ["n"])
        assert written(instance) > before


async def test_row34_a_refused_kind_fails_alone_and_recovers(sim: Simulator,
                                                             sqlite_dsn: str) -> None:
    x = await populated(sim, "x", 20, nodes=3, workloads=4)
    await populated(sim, "y", 20, nodes=3, workloads=4, seed=9)
    x.deny("nodes", 403)
    async with running(settings_for(sim, sqlite_dsn, ["x", "y"])) as instance:
        sup = await instance.controller.wait_owned(ClusterId("x"))
        nodes = sup.reconcilers["nodes"]
        async with asyncio.timeout(TIMEOUT):
            for rec in sup.reconcilers.values():
                if rec is not nodes:
                    await rec.wait_synced()
            while not nodes.status.refused:  # the loop's own state: no event to await
                await asyncio.sleep(0.05)
        await caught_up(instance, sim, ["y"])
        assert "403" in (nodes.status.last_error or "")
        ready, _ = instance.readiness()
        assert ready
        doc = await instance.status()
        x_doc = next(c for c in doc["clusters"] if c["id"] == "x")
        assert x_doc["state"] == "degraded" and x_doc["sync"]["nodes"]["state"] == "refused"
        assert x_doc["sync"]["pods"]["state"] == "watching"
        assert next(c for c in doc["clusters"] if c["id"] == "y")["state"] == "watching"
        samples = instance.metrics.registry.get_sample_value
        assert samples("bkcmdb_sync_sync_healthy", {"cluster": "x", "kind": "nodes"}) == 0
        assert samples("bkcmdb_sync_sync_errors_total",
                       {"cluster": "x", "kind": "nodes", "reason": "refused"}) >= 1
        # pods of the same cluster keep syncing meanwhile
        sim.controllers("x").step("pods", 5)
        for resource, rec in sup.reconcilers.items():
            if resource != "nodes":
                await rec.caught_up(x.resource_version)
        assert await rows_of(sqlite_dsn, "x", "nodes") == {}
        x.allow("nodes")
        async with asyncio.timeout(TIMEOUT):
            await nodes.wait_synced()
        await caught_up(instance, sim, ["x"])
        assert len(await rows_of(sqlite_dsn, "x", "nodes")) == x.count("nodes")
        assert samples("bkcmdb_sync_sync_healthy", {"cluster": "x", "kind": "nodes"}) == 1
        assert (await instance.status())["clusters"][0]["state"] == "watching"
