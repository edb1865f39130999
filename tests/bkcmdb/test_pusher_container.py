"""The pusher for `api: container` (the original design's pod API) against the simulator:
pods placed by set/module with the bkbcs fallback, updated in place, deleted by key; a
business without the default module is one error for its cluster while others sync
(TEST-MATRIX row 41); hand edits repaired at the full reconcile."""

from __future__ import annotations

from typing import Any

import orjson
from bkcmdb_support import BIZ, OTHER_BIZ, FakeTime
from pusher_support import ManualClock, Rows, World

from synchronizer.bkcmdb.pusher import (
    PUSH_JOB,
    MemoryTaskQueue,
    ObjectKind,
    PushMode,
    Reason,
    Table,
    TaskRunner,
)

K = ObjectKind.CONTAINER_POD


def pods_of(world: World, cluster: str = "c1") -> dict[str, dict[str, Any]]:
    return {p["bk_pod_name"]: p for p in world.sim.model.container.pods.values()
            if p["bk_pod_cluster"] == cluster}


def module(world: World, biz: int, set_name: str, name: str) -> int:
    return world.sim.model.hosts.add_module(biz, set_name, name)


def three_pods(rows: Rows) -> None:
    rows.pod("default", "plain", node="n1", host_ip="10.1.0.1", labels={"app": "a"},
             workload=("Deployment", "plain"))
    rows.pod("default", "placed", node="n1", set_name="web", module_name="nginx")
    rows.pod("default", "unknown", node="n2", set_name="web", module_name="ghost")


async def test_pods_are_placed_under_their_module_or_the_default(pod_world: World) -> None:
    three_pods(pod_world.rows)
    report = await pod_world.push(PushMode.FULL)
    assert report.error is None and report.pending_total == 0
    assert report.created == {K: 3}
    pods = pods_of(pod_world)
    assert pods["placed"]["bk_module_id"] == module(pod_world, BIZ, "web", "nginx")
    default = module(pod_world, BIZ, "bkbcs", "bkbcs")
    assert pods["plain"]["bk_module_id"] == default == pods["unknown"]["bk_module_id"]
    plain = pods["plain"]
    assert (plain["bk_biz_id"], plain["bk_pod_cluster"], plain["bk_pod_namespace"],
            plain["bk_pod_uuid"], plain["bk_pod_workloadtype"], plain["bk_pod_workloadname"],
            plain["bk_pod_status"], plain["bk_host_innerip"]) == \
        (BIZ, "c1", "default", "pod-default-plain", "Deployment", "plain", "Running", "10.1.0.1")
    assert orjson.loads(plain["bk_pod_labels"]) == {"app": "a"}
    assert orjson.loads(plain["bk_pod_containers"])[0]["container_id"].startswith("containerd://")
    pod_world.sim.stats.reset()
    report = await pod_world.push()
    assert report.requests == 0 and report.changed == 0


async def test_changes_are_updated_in_place_and_deletes_go_by_key(pod_world: World) -> None:
    three_pods(pod_world.rows)
    await pod_world.converge()
    ids = {n: p["bk_pod_id"] for n, p in pods_of(pod_world).items()}
    pod_world.rows.touch(Table.PODS, "pod-default-plain", phase="Failed", pod_ip="10.244.7.7")
    pod_world.rows.touch(Table.PODS, "pod-default-unknown", set_name="web", module_name="nginx")
    pod_world.rows.delete(Table.PODS, "pod-default-placed")
    pod_world.sim.stats.reset()
    report = await pod_world.push()
    assert report.updated == {K: 2} and report.deleted == {K: 1} and report.pending_total == 0
    pods = pods_of(pod_world)
    assert set(pods) == {"plain", "unknown"}
    assert {n: p["bk_pod_id"] for n, p in pods.items()} == {n: ids[n] for n in pods}, \
        "updated in place: same ids"
    assert (pods["plain"]["bk_pod_status"], pods["plain"]["bk_pod_ip"]) == ("Failed",
                                                                            "10.244.7.7")
    assert pods["unknown"]["bk_module_id"] == module(pod_world, BIZ, "web", "nginx")
    assert pod_world.sim.stats.requests == {"update_pod": 2, "delete_pod": 1}


async def test_a_business_without_the_default_module_blocks_only_its_cluster(
        pod_world: World, fake_time: FakeTime) -> None:
    """TEST-MATRIX row 41: one clear error for that cluster; its placed pods and every
    other cluster sync; the pods appear once the module exists."""
    three_pods(pod_world.rows)
    other = Rows("c2", pod_world.desired, biz=OTHER_BIZ)
    other.pod("apps", "a1", node="m1")
    other.pod("apps", "a2", node="m1")
    other.pod("apps", "own", node="m1", set_name="games", module_name="lobby")
    module(pod_world, OTHER_BIZ, "games", "lobby")
    first = await pod_world.push(PushMode.FULL)
    assert first.error is None and first.pending_total == 0
    report = await pod_world.push(PushMode.FULL, cluster="c2", biz_id=OTHER_BIZ)
    assert report.error is not None and report.error.kind == "NoDefaultModule"
    assert not report.error.transient
    assert f"business {OTHER_BIZ} has no module bkbcs/bkbcs" in report.error.message
    assert report.created == {K: 1} and report.pending == {Reason.NO_MODULE: 2}
    assert set(pods_of(pod_world, "c2")) == {"own"}
    assert pod_world.sim.stats.requests["search_biz_inst_topo"] == 2, "one tree per business"
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    runner = TaskRunner(pusher=pod_world.pusher, queue=queue, owner="a", clock=clock,
                        sleep=clock.sleep, targets=lambda: {"c2": pod_world.target(
                            "c2", biz_id=OTHER_BIZ)})
    (report,) = await runner.run_once()
    task = queue.tasks[("c2", PUSH_JOB)]
    assert "has no module bkbcs/bkbcs" in task.error and task.pending == 2
    assert (task.attempts, task.next_start) == (0, clock.now + runner.settings.retry_pending), \
        "no backoff: the cluster's other pods keep syncing"
    module(pod_world, OTHER_BIZ, "bkbcs", "bkbcs")
    fake_time.now += 31  # the topology cache refreshes a business at most every 30 s
    report = await pod_world.push(cluster="c2", biz_id=OTHER_BIZ)
    assert report.error is None and report.created == {K: 2} and report.pending_total == 0
    assert set(pods_of(pod_world, "c2")) == {"own", "a1", "a2"}


async def test_hand_edits_are_repaired_and_modules_move_at_the_full_reconcile(
        pod_world: World, fake_time: FakeTime) -> None:
    three_pods(pod_world.rows)
    await pod_world.converge()
    api = pod_world.client.container
    await api.delete_pod(BIZ, ("c1", "default", "plain"))
    await api.update_pod(BIZ, ("c1", "default", "placed"), {"bk_pod_ip": "6.6.6.6"})
    stray = {**pods_of(pod_world)["placed"], "bk_pod_name": "stray", "bk_pod_uuid": "x"}
    del stray["bk_pod_id"]
    await api.create_pod(BIZ, stray)
    ghost = module(pod_world, BIZ, "web", "ghost")  # the annotated module appears
    fake_time.now += 31  # and the business's tree may be read again
    assert (await pod_world.push()).changed == 0, "trusted between full reconciles"
    report = await pod_world.push(PushMode.FULL)
    assert report.error is None and report.pending_total == 0, report.summary()
    assert report.forgotten == {K: 1} and report.drifted == {K: 1} and report.orphans == 1
    assert report.created == {K: 1} and report.deleted == {K: 1} and report.updated == {K: 2}
    pods = pods_of(pod_world)
    assert set(pods) == {"plain", "placed", "unknown"}
    assert pods["placed"]["bk_pod_ip"] == "10.244.0.1"
    assert pods["unknown"]["bk_module_id"] == ghost


async def test_a_pod_replaced_under_the_same_name_is_handed_over(pod_world: World) -> None:
    pod_world.rows.pod("default", "db-0", uid="old", node="n1")
    await pod_world.converge()
    pod_world.rows.pod("default", "db-0", uid="new", node="n2", ip="10.244.1.1")
    report = await pod_world.push()
    assert report.pending == {Reason.NAME_TAKEN: 1}
    pod_world.rows.delete(Table.PODS, "old")
    report = await pod_world.push()
    assert report.error is None and report.pending_total == 0, report.summary()
    assert report.deleted == {} and report.adopted == {K: 1}
    (pod,) = pods_of(pod_world).values()
    assert (pod["bk_pod_uuid"], pod["bk_pod_ip"]) == ("new", "10.244.1.1")


async def test_a_removed_cluster_loses_its_pods(pod_world: World) -> None:
    three_pods(pod_world.rows)
    await pod_world.converge()
    report = await pod_world.push(removed=True)
    assert report.finished and report.deleted == {K: 3} and pods_of(pod_world) == {}
