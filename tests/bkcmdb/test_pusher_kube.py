"""The pusher for `api: kube` against the simulator over HTTP, in both dialects: the tables
made equal in bk-cmdb, changes in place or by recreating pods, deletes bottom-up, what
waits and why (TEST-MATRIX rows 35 and 41), limits."""

from __future__ import annotations

import pytest
from bkcmdb_support import BIZ, OTHER_BIZ, FakeTime, settings_for
from pusher_support import Rows, World

from synchronizer.bkcmdb import BkCmdbClient
from synchronizer.bkcmdb.pusher import (
    MemoryDesiredState,
    MemoryLedger,
    ObjectKind,
    Pusher,
    PushMode,
    Reason,
    Table,
)
from synchronizer.bkcmdb.simulator import BkCmdbSimulator

K = ObjectKind


def small_cluster(rows: Rows) -> None:
    rows.namespace("default", labels={"team": "a", "app.kubernetes.io/part-of": "shop"})
    rows.namespace("kube-system")
    rows.node("n1", "10.1.0.1", labels={"kubernetes.io/os": "linux"})
    rows.node("n2", "10.1.0.2", unschedulable=1)
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
        rows.workload(kind, "default", kind.lower(), replicas=None if "Job" in kind else 2)
    rows.workload("ReplicaSet", "default", "own-rs")  # not a kind bk-cmdb has a table for
    rows.pod("default", "web-1", node="n1", workload=("Deployment", "deployment"),
             labels={"pod-template-hash": "abc", "a.b/c": "d"})
    rows.pod("default", "db-0", node="n2", workload=("StatefulSet", "statefulset"),
             containers=[("db", "mysql:8", "docker://0a"), ("sidecar", "envoy", "cri-o://0b")])
    rows.pod("default", "bare", node="n1")
    rows.pod("default", "rs-owned", node="n2", workload=("ReplicaSet", "own-rs"))
    rows.pod("kube-system", "proxy", node="n1", workload=("DaemonSet", "gone"))


async def test_a_cluster_is_made_equal_to_its_tables(world: World) -> None:
    small_cluster(world.rows)
    report = await world.push(PushMode.FULL)
    assert report.error is None and report.pending_total == 0, report.summary()
    assert world.actual() == world.expected()
    assert report.created == {K.CLUSTER: 1, K.NAMESPACE: 2, K.NODE: 2, K.WORKLOAD: 5,
                              K.PODS_WORKLOAD: 2, K.POD: 5}
    model = world.sim.model
    (cluster,) = model.clusters.values()
    assert (cluster["uid"], cluster["bk_biz_id"], cluster["type"]) == \
        ("c1", BIZ, "INDEPENDENT_CLUSTER")
    pods = {p["name"]: p for p in model.pods.values()}
    assert pods["bare"]["ref"]["kind"] == "pods" and pods["rs-owned"]["ref"]["kind"] == "pods"
    assert pods["proxy"]["ref"] == {"kind": "pods", "name": "pods",
                                    "id": pods["proxy"]["ref"]["id"]}, \
        "a workload missing from the tables: the namespace's pods workload"
    assert all(p["operator"] == ["admin"] for p in pods.values()), "bk-cmdb requires operator"
    assert {c["container_uid"] for c in model.containers.values()} >= {"0a", "0b"}
    assert (await world.converge()).requests > 0


async def test_a_push_with_nothing_new_makes_no_request(world: World) -> None:
    """TEST-MATRIX row 35: status-only noise costs zero bk-cmdb requests."""
    small_cluster(world.rows)
    await world.converge()
    world.sim.stats.reset()
    rows = world.rows
    rows.touch(Table.NODES, "node-n1", ready="False", kubelet_version="v1.31.0",
               query_at="2025-01-02 00:00:00")
    rows.touch(Table.PODS, "pod-default-web-1", phase="Succeeded", host_ip="10.1.0.1")
    rows.touch(Table.WORKLOADS, "wl-Deployment-default-deployment", images='["nginx:2"]')
    rows.touch(Table.NAMESPACES, "ns-default", phase="Terminating", checksum="other")
    for mode in (PushMode.INCREMENTAL, PushMode.INCREMENTAL, PushMode.SWEEP):
        report = await world.push(mode)
        assert (report.requests, report.changed, report.pending_total) == (0, 0, 0)
    assert report.rows_read > 0
    assert world.requests() == 0, world.sim.stats.requests


async def test_changes_are_made_in_place_and_pods_are_made_again(world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    model = world.sim.model
    web_id = next(i for i, p in model.pods.items() if p["name"] == "web-1")
    rows = world.rows
    rows.touch(Table.NAMESPACES, "ns-default", labels='{"team": "b"}')
    rows.touch(Table.WORKLOADS, "wl-Deployment-default-deployment", replicas=5)
    rows.touch(Table.NODES, "node-n2", unschedulable=0, labels='{"zone": "z1"}')
    rows.touch(Table.PODS, "pod-default-web-1", pod_ip="10.244.3.3")
    world.sim.stats.reset()
    report = await world.push()
    assert report.error is None and report.pending_total == 0
    assert report.updated == {K.NAMESPACE: 1, K.WORKLOAD: 1, K.NODE: 1}
    assert report.deleted == {K.POD: 1} and report.created == {K.POD: 1}
    assert world.actual() == world.expected()
    assert web_id not in model.pods, "bk-cmdb has no pod update: deleted and made again"
    stats = world.sim.stats.requests
    assert stats["batch_update_kube_namespace"] == 1 and stats["batch_update_kube_workload"] == 1
    assert stats["batch_update_kube_node"] == 1 and stats["list_biz_hosts"] == 1


async def test_a_node_on_another_host_is_made_again_with_its_pods(world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    node_ids = {n["name"]: i for i, n in world.sim.model.nodes.items()}
    world.rows.touch(Table.NODES, "node-n1", internal_ip="10.1.0.3")
    report = await world.push()
    assert report.error is None and report.pending_total == 0
    assert report.deleted[K.NODE] == 1 and report.deleted[K.POD] == 3
    assert world.actual() == world.expected()
    assert node_ids["n1"] not in world.sim.model.nodes


async def test_deletes_go_pods_first_and_a_removed_cluster_goes_last(world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    rows = world.rows
    rows.delete(Table.NAMESPACES, "ns-kube-system")
    rows.delete(Table.PODS, "pod-kube-system-proxy")
    rows.delete(Table.PODS, "pod-default-db-0")
    rows.delete(Table.WORKLOADS, "wl-StatefulSet-default-statefulset")
    rows.delete(Table.NODES, "node-n2")  # rs-owned still runs there: it goes too
    report = await world.push()
    assert report.error is None and not report.dead_letters, report.summary()
    assert report.deleted == {K.POD: 3, K.WORKLOAD: 1, K.PODS_WORKLOAD: 1, K.NODE: 1,
                              K.NAMESPACE: 1}
    assert report.pending == {Reason.NO_NODE: 1}
    assert world.actual() == world.expected()
    report = await world.push(removed=True)
    assert report.finished and report.error is None and report.mode is PushMode.FULL
    model = world.sim.model
    assert not model.clusters and not model.pods and not model.namespaces and not model.nodes
    assert not await world.ledger.entries("c1")


async def test_a_node_without_a_host_waits_and_appears_once_the_host_exists(
        world: World) -> None:
    """TEST-MATRIX row 41: reported per cluster, the rest syncs, and it appears later."""
    small_cluster(world.rows)
    world.rows.node("n9", "10.7.7.7")
    world.rows.node("n8", "10.9.0.1")  # a host of another business does not count
    world.rows.pod("default", "lost", node="n9")
    report = await world.push(PushMode.FULL)
    assert report.error is None
    assert report.pending == {Reason.NO_HOST: 2, Reason.NO_NODE: 1}
    waiting = {p.name: p for p in report.pending_sample}
    assert "10.7.7.7" in waiting["n9"].detail and "has no host" in waiting["lost"].detail
    assert world.actual() == world.expected(), "everything else is there"
    host = world.sim.model.hosts.add_host("10.7.7.7", biz_id=BIZ)
    report = await world.push()
    assert report.created == {K.NODE: 1, K.POD: 1} and report.pending == {Reason.NO_HOST: 1}
    node = next(n for n in world.sim.model.nodes.values() if n["name"] == "n9")
    assert node["bk_host_id"] == host and node["internal_ip"] == ["10.7.7.7"]
    assert world.actual() == world.expected()


async def test_a_pod_waits_for_its_container_ids(world: World) -> None:
    small_cluster(world.rows)
    world.rows.pod("default", "young", node="n1", containers=[("app", "nginx", "")])
    report = await world.push(PushMode.FULL)
    assert report.pending == {Reason.NOT_STARTED: 1}
    world.rows.touch(Table.PODS, "pod-default-young",
                     containers='[{"name": "app", "image": "nginx", '
                                '"container_id": "containerd://77"}]')
    report = await world.push()
    assert report.created == {K.POD: 1} and report.pending_total == 0
    assert world.actual() == world.expected()


async def test_a_row_that_cannot_be_read_never_deletes_what_bk_cmdb_holds(
        world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    before = world.actual()
    world.rows.touch(Table.PODS, "pod-default-bare", labels="{not json")
    world.rows.touch(Table.NAMESPACES, "ns-kube-system", labels="[1, 2]")
    for mode in (PushMode.INCREMENTAL, PushMode.SWEEP, PushMode.FULL):
        report = await world.push(mode)
        assert report.error is None and report.deleted == {} and report.created == {}
        assert report.pending == {Reason.BAD_ROW: 2}
    problems = sorted(p.detail for p in report.pending_sample)
    assert problems == ["row 'ns-kube-system': column labels is not a JSON dict",
                        "row 'pod-default-bare': column labels is not JSON"]
    assert world.actual() == before
    world.rows.touch(Table.PODS, "pod-default-bare", labels='{"fixed": "yes"}')
    world.rows.touch(Table.NAMESPACES, "ns-kube-system", labels="{}")
    assert (await world.push()).pending_total == 0
    assert world.actual() == world.expected()


async def test_a_pod_whose_containers_share_an_id_waits_and_blocks_nothing(
        world: World) -> None:
    """bk-cmdb would refuse it with 1199014 (its (pod, container_uid) key) — the answer that
    means "exists, adopt it" — forever; found by the 50,000-pod benchmark, where the
    simulator's log-agent DaemonSet pods had two containers of one name."""
    small_cluster(world.rows)
    world.rows.pod("default", "twin", node="n1", containers=[
        ("a", "nginx", "containerd://same"), ("b", "nginx", "containerd://same")])
    for n in range(5):
        world.rows.pod("default", f"fine-{n}", node="n1")
    report = await world.push(PushMode.FULL)
    assert report.error is None and report.pending == {Reason.BAD_ROW: 1}
    assert report.pending_sample[0].detail == \
        "row 'pod-default-twin': two containers share a container id"
    found = world.actual()["pods"]
    assert ("default", "twin") not in found and ("default", "fine-4") in found


async def test_a_name_held_by_an_older_row_waits_for_it(world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    # a StatefulSet pod made again: the new uid is Active before the old one's tombstone
    world.rows.pod("default", "db-0", uid="db-0-new", node="n1",
                   workload=("StatefulSet", "statefulset"))
    report = await world.push()
    assert report.pending == {Reason.NAME_TAKEN: 1} and report.created == {}
    world.rows.delete(Table.PODS, "pod-default-db-0")
    report = await world.push()
    assert report.deleted == {K.POD: 1} and report.created == {K.POD: 1}
    assert world.actual() == world.expected()
    assert [p["node_name"] for p in world.sim.model.pods.values() if p["name"] == "db-0"] == \
        ["n1"]


async def test_a_pod_moves_under_its_workload_when_the_workload_row_arrives(
        world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    assert ("pods", "kube-system", "pods") in world.actual()["workloads"]
    world.rows.workload("DaemonSet", "kube-system", "gone")
    report = await world.push()
    assert report.created == {K.WORKLOAD: 1, K.POD: 1}
    assert report.deleted == {K.POD: 1, K.PODS_WORKLOAD: 1}, "its pods workload is not needed"
    assert world.actual() == world.expected()


async def test_clusters_are_independent(world: World) -> None:
    small_cluster(world.rows)
    other = Rows("c2", world.desired)
    other.namespace("default")
    other.node("m1", "10.1.0.2")
    other.pod("default", "x", node="m1")
    assert (await world.push(PushMode.FULL)).pending_total == 0
    assert (await world.push(PushMode.FULL, cluster="c2")).pending_total == 0
    assert world.actual("c2") == world.expected("c2") and world.actual() == world.expected()
    report = await world.push(cluster="c2", removed=True)
    assert report.finished and world.actual() == world.expected()


async def test_a_cluster_moved_to_another_business_is_emptied_there_first(world: World) -> None:
    world.sim.model.hosts.add_host("10.3.0.1", biz_id=OTHER_BIZ)
    world.rows.namespace("default")
    world.rows.node("n1", "10.1.0.1")
    world.rows.pod("default", "p", node="n1")
    await world.converge()
    world.rows.touch(Table.NODES, "node-n1", internal_ip="10.3.0.1")
    report = await world.push(biz_id=OTHER_BIZ)
    assert report.error is None and report.pending_total == 0, report.summary()
    (cluster,) = world.sim.model.clusters.values()
    assert cluster["bk_biz_id"] == OTHER_BIZ
    assert {p["bk_biz_id"] for p in world.sim.model.pods.values()} == {OTHER_BIZ}


async def test_batches_stay_within_batch_size_and_bk_cmdb_limits(
        sim: BkCmdbSimulator, fake_time: FakeTime) -> None:
    for i in range(130):
        sim.model.hosts.add_host(f"10.2.{i // 250}.{i % 250 + 1}", biz_id=BIZ)
    desired = MemoryDesiredState()
    rows = Rows("big", desired)
    rows.namespace("default")
    for i in range(130):
        rows.node(f"n{i}", f"10.2.{i // 250}.{i % 250 + 1}")
    for i in range(450):
        rows.pod("default", f"p{i}", node=f"n{i % 130}")
    for batch_size, limits in ((200, {"batch_create_kube_pod": 200, "batch_create_kube_node": 100,
                                      "batch_delete_kube_pod": 200}),
                               (70, {"batch_create_kube_pod": 70, "batch_create_kube_node": 70,
                                     "batch_delete_kube_pod": 70})):
        sim.stats.reset()
        async with BkCmdbClient(settings_for(sim, batch_size=batch_size), clock=fake_time.clock,
                                sleep=fake_time.sleep) as client:
            pusher = Pusher(client=client, desired=desired, ledger=MemoryLedger())
            world = World(sim=sim, client=client, desired=desired, ledger=None, pusher=pusher,
                          rows=rows)
            report = await world.push(PushMode.FULL, cluster="big")
            assert report.created[K.POD] == 450 and report.pending_total == 0
            assert world.actual("big") == world.expected("big")
            assert (await world.push(cluster="big", removed=True)).finished
        largest = sim.stats.largest_batch
        for route, limit in limits.items():
            assert 0 < largest[route] <= limit, (route, largest[route])
        assert sim.stats.requests["batch_create_kube_pod"] == -(-450 // limits[
            "batch_create_kube_pod"])


@pytest.mark.parametrize("count", [1, 3])
async def test_pods_of_one_node_are_one_request_per_batch(world: World, count: int) -> None:
    world.rows.namespace("default")
    world.rows.node("n1", "10.1.0.1")
    for i in range(count):
        world.rows.pod("default", f"p{i}", node="n1")
    report = await world.push(PushMode.FULL)
    assert report.created[K.POD] == count
    assert world.sim.stats.requests["batch_create_kube_pod"] == 1
