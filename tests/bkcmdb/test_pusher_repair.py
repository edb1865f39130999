"""The full reconcile (TEST-MATRIX row 40): objects deleted or edited in bk-cmdb by hand,
orphans, a lost ledger and a cluster deleted by hand are repaired at the next full
reconcile — and not before, since an incremental push trusts the ledger."""

from __future__ import annotations

from bkcmdb_support import BIZ
from pusher_support import World
from test_pusher_kube import small_cluster

from synchronizer.bkcmdb import NamespaceSpec, PodSpec, WorkloadSpec
from synchronizer.bkcmdb.pusher import MemoryLedger, ObjectKind, Pusher, PushMode

K = ObjectKind


def _id(table: dict[int, dict], name: str) -> int:
    return next(i for i, row in table.items() if row["name"] == name)


async def test_hand_deletes_and_edits_are_repaired_at_the_next_full_reconcile(
        world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    kube, model = world.client.kube, world.sim.model
    # by hand, through bk-cmdb's API
    await kube.delete_pods(BIZ, [_id(model.pods, "web-1")])
    db0 = _id(model.pods, "db-0")
    await kube.delete_pods(BIZ, [db0])
    await kube.delete_workloads(BIZ, "statefulSet", [_id(model.workloads["statefulSet"],
                                                         "statefulset")])
    await kube.update_namespaces(BIZ, [_id(model.namespaces, "default")],
                                 {"labels": {"edited": "by-hand"}})
    await kube.update_workloads(BIZ, "deployment", [_id(model.workloads["deployment"],
                                                        "deployment")], {"replicas": 9})
    await kube.update_nodes(BIZ, [_id(model.nodes, "n1")], {"labels": {"x": "y"}})
    cluster_id = next(iter(model.clusters))
    ns_id = _id(model.namespaces, "default")
    (extra_ns,) = (await kube.create_namespaces(BIZ, [NamespaceSpec(
        cluster_id=cluster_id, name="hand-made")])).values()
    pods_wl = next(i for i, w in model.workloads["pods"].items() if w["namespace"] == "default")
    node = model.nodes[_id(model.nodes, "n1")]
    await kube.create_pods([PodSpec(
        biz_id=BIZ, cluster_id=cluster_id, namespace_id=ns_id, node_id=node["id"],
        host_id=node["bk_host_id"], ref_kind="pods", ref_id=pods_wl, name="stray")])
    await kube.create_workloads(BIZ, [WorkloadSpec(kind="job", namespace_id=extra_ns,
                                                   name="stray-job")])
    assert world.actual() != world.expected()

    world.sim.stats.reset()
    report = await world.push()
    assert report.requests == 0 and world.requests() == 0, "the ledger is trusted in between"

    report = await world.push(PushMode.FULL)
    assert report.error is None and report.pending_total == 0, report.summary()
    assert report.forgotten == {K.POD: 2, K.WORKLOAD: 1}
    assert report.drifted == {K.NAMESPACE: 1, K.WORKLOAD: 1, K.NODE: 1}
    assert report.orphans == 3 and report.deleted == {K.POD: 1, K.WORKLOAD: 1, K.NAMESPACE: 1}
    assert report.created == {K.POD: 2, K.WORKLOAD: 1}
    assert report.updated == {K.NAMESPACE: 1, K.WORKLOAD: 1, K.NODE: 1}
    assert world.actual() == world.expected()
    assert (await world.push(PushMode.FULL)).changed == 0


async def test_a_lost_ledger_is_rebuilt_by_adoption_without_a_duplicate(world: World) -> None:
    small_cluster(world.rows)
    await world.converge()
    before = world.actual()
    ids = (set(world.sim.model.pods), set(world.sim.model.namespaces))
    fresh = Pusher(client=world.client, desired=world.desired, ledger=MemoryLedger())
    report = await fresh.push(world.target(), mode=PushMode.FULL)
    assert report.error is None and report.pending_total == 0
    assert report.created == {} and report.deleted == {}
    assert report.adopted == {K.CLUSTER: 1, K.NAMESPACE: 2, K.NODE: 2, K.WORKLOAD: 5,
                              K.PODS_WORKLOAD: 2, K.POD: 5}
    assert world.actual() == before and (set(world.sim.model.pods),
                                         set(world.sim.model.namespaces)) == ids


async def test_a_cluster_deleted_by_hand_is_made_again(world: World) -> None:
    world.rows.namespace("default")
    world.rows.node("n1", "10.1.0.1")
    world.rows.pod("default", "p", node="n1")
    await world.converge()
    model, kube = world.sim.model, world.client.kube
    await kube.delete_pods(BIZ, list(model.pods))
    await kube.delete_workloads(BIZ, "pods", list(model.workloads["pods"]))
    await kube.delete_nodes(BIZ, list(model.nodes))
    await kube.delete_namespaces(BIZ, list(model.namespaces))
    await kube.delete_clusters(BIZ, list(model.clusters))
    report = await world.push(PushMode.FULL)
    assert report.forgotten == {K.CLUSTER: 1, K.NAMESPACE: 1, K.NODE: 1, K.PODS_WORKLOAD: 1,
                                K.POD: 1}
    assert report.error is None and report.pending_total == 0
    assert world.actual() == world.expected()
