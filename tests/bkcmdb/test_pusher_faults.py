"""The pusher meets bk-cmdb's failures (TEST-MATRIX rows 36-38): rate limits and outages
answered with backoff and nothing lost, an unreachable bk-cmdb (the difference, not a
queue), ambiguous creates adopted, permanent refusals dead-lettered while the rest goes on."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from bkcmdb_support import BIZ, FakeTime, settings_for
from pusher_support import ManualClock, Rows, World

from synchronizer.bkcmdb import BkCmdbClient
from synchronizer.bkcmdb.pusher import (
    PUSH_JOB,
    MemoryDesiredState,
    MemoryTaskQueue,
    ObjectKind,
    Pusher,
    PushMode,
    PushReport,
    Reason,
    RunnerSettings,
    Table,
    TaskRunner,
)

K = ObjectKind


def many(rows: Rows, pods: int = 260) -> None:
    rows.namespace("default")
    for i in range(3):
        rows.node(f"n{i}", f"10.1.0.{i + 1}")
    rows.workload("Deployment", "default", "web", replicas=pods)
    for i in range(pods):
        rows.pod("default", f"web-{i}", node=f"n{i % 3}", workload=("Deployment", "web"),
                 ip=f"10.244.{i // 250}.{i % 250}")


async def drive(runner: TaskRunner, queue: MemoryTaskQueue, clock: ManualClock,
                cluster: str = "c1", limit: int = 40) -> list[PushReport]:
    """Run the cluster's task each time it is due, until a push finds nothing to do."""
    reports: list[PushReport] = []
    for _ in range(limit):
        clock.now = max(clock.now, queue.tasks[(cluster, PUSH_JOB)].next_start) \
            if (cluster, PUSH_JOB) in queue.tasks else clock.now
        done = await runner.run_once()
        reports += done
        last = done[-1] if done else None
        if last is not None and last.error is None and not last.changed \
                and not last.pending_total:
            return reports
    raise AssertionError(f"no convergence: {[r.summary() for r in reports[-3:]]}")


async def test_rate_limits_and_outages_back_off_and_lose_nothing(world: World,
                                                                 fake_time: FakeTime) -> None:
    """TEST-MATRIX row 36: 429 (Retry-After honoured), 5xx and `result:false` 1199002 for a
    while; backoff, nothing lost, converged, no request over 200 objects."""
    many(world.rows)
    sim = world.sim
    sim.fail(kind="status", status=429, retry_after=7, count=3, route="batch_create_kube_pod")
    sim.fail(kind="status", status=503, count=4, route="batch_create_kube_namespace")
    sim.fail(kind="result", code=1199002, count=5, route="batch_create_kube_workload")
    sim.fail(kind="status", status=502, count=2, route="list_biz_hosts")
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    runner = TaskRunner(pusher=world.pusher, queue=queue, owner="a", clock=clock,
                        sleep=clock.sleep, targets=lambda: {"c1": world.target()},
                        settings=RunnerSettings(backoff_initial=4, backoff_max=60))
    reports = await drive(runner, queue, clock)
    failed = [r for r in reports if r.error is not None]
    assert failed and all(r.error.transient for r in failed if r.error)
    assert {r.error.kind for r in failed if r.error} == {"RateLimitedError", "ServerError"}
    assert 1199002 in {r.error.code for r in failed if r.error}
    assert all(r.pending_total > 0 for r in failed), "what is not done yet is pending"
    assert 7.0 in fake_time.sleeps, "the client waited as long as Retry-After said"
    assert world.actual() == world.expected()
    assert sum(1 for p in sim.model.pods.values()) == 260, "nothing lost, nothing doubled"
    largest = sim.stats.largest_batch
    assert max(largest.values()) <= 200 and largest["batch_create_kube_pod"] == 200
    assert queue.tasks[("c1", PUSH_JOB)].attempts == 0 and queue.tasks[("c1", PUSH_JOB)].error == ""


class Highest(random.Random):
    """Jitter that always picks the top of its range, so the ceilings show."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_backoff_grows_while_bk_cmdb_keeps_failing(world: World) -> None:
    many(world.rows, pods=5)
    world.sim.fail(kind="status", status=503, count=None)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    runner = TaskRunner(pusher=world.pusher, queue=queue, owner="a", clock=clock,
                        sleep=clock.sleep, targets=lambda: {"c1": world.target()},
                        settings=RunnerSettings(backoff_initial=4, backoff_max=60),
                        rng=Highest())
    waits = []
    for attempt in range(1, 7):
        start = clock.now
        (report,) = await runner.run_once()
        task = queue.tasks[("c1", PUSH_JOB)]
        assert report.error is not None and task.attempts == attempt
        assert "HTTP 503" in task.error
        waits.append(task.next_start - start)
        clock.now = task.next_start
    assert waits == [4, 8, 16, 32, 60, 60]
    jittered = TaskRunner(pusher=world.pusher, queue=queue, owner="b", clock=clock,
                          sleep=clock.sleep, targets=dict, rng=random.Random(7),
                          settings=RunnerSettings(backoff_initial=4, backoff_max=60))
    assert all(2 <= jittered.backoff(5) <= 60 for _ in range(50))
    assert len({jittered.backoff(5) for _ in range(50)}) > 1, "jittered"
    assert await runner.run_once() != [] and (await queue.pending())[0].cluster == "c1"
    world.sim.faults.clear()
    clock.now = queue.tasks[("c1", PUSH_JOB)].next_start
    (report,) = await runner.run_once()
    assert report.error is None and queue.tasks[("c1", PUSH_JOB)].attempts == 0


async def test_an_unreachable_bk_cmdb_costs_time_not_memory(world: World) -> None:
    """TEST-MATRIX row 37: pending rises while bk-cmdb is down; what is held is the
    difference (one value per row), not the churn; converged once it is back."""
    many(world.rows, pods=30)
    await world.converge()
    await world.sim.stop()
    sizes, pendings = [], []
    for round_ in range(20):
        for i in range(30):
            world.rows.touch(Table.PODS, f"pod-default-web-{i}", pod_ip=f"10.9.{round_}.{i}")
        world.rows.pod("default", f"extra-{round_}", node="n0", workload=("Deployment", "web"))
        report = await world.push()
        assert report.error is not None and report.error.kind == "UnreachableError"
        assert report.error.transient
        sizes.append(world.pusher.cached("c1"))
        pendings.append(report.pending_total)
    assert pendings[0] == 31 and pendings[-1] == 50, "every changed or new pod, once"
    assert pendings == sorted(pendings)
    rows = sum(len(world.desired.active("c1", t)) for t in Table)
    assert sizes[-1] == rows == 1 + 3 + 1 + 50, "one value per Active row, 600 changes later"
    await world.sim.start(port=world.sim.port)
    report = await world.push()
    assert report.error is None and report.pending_total == 0
    assert report.deleted == {K.POD: 30} and report.created == {K.POD: 50}
    assert world.actual() == world.expected()


async def test_an_ambiguous_create_is_adopted_not_doubled(world: World) -> None:
    """TEST-MATRIX row 38: the connection is cut after bk-cmdb applied the create."""
    many(world.rows, pods=40)
    world.sim.fail(kind="cut", route="batch_create_kube_pod")
    world.sim.fail(kind="cut", route="batch_create_kube_namespace")
    first = await world.push(PushMode.FULL)
    assert first.error is not None and first.error.kind == "AmbiguousWriteError"
    assert world.sim.model.namespaces and not world.ledger.clusters["c1"].get(
        (K.NAMESPACE, "ns-default"))
    second = await world.push()
    assert second.adopted == {K.NAMESPACE: 1} and second.error is not None, second.summary()
    third = await world.push()
    assert third.error is None and third.adopted == {K.POD: 40} and third.created == {}
    assert world.sim.stats.requests["batch_create_kube_pod"] == 2, "cut; then 1199014, adopted"
    assert world.actual() == world.expected()
    assert len(world.sim.model.pods) == 40
    assert (await world.push(PushMode.FULL)).changed == 0, "adopted as equal: nothing to redo"


async def test_an_adopted_leftover_that_differs_is_brought_up_to_date(world: World) -> None:
    many(world.rows, pods=3)
    world.sim.fail(kind="cut", route="batch_create_kube_pod")
    assert (await world.push(PushMode.FULL)).error is not None
    world.rows.touch(Table.PODS, "pod-default-web-1", pod_ip="10.250.0.1")
    report = await world.push()
    assert report.adopted == {K.POD: 3}
    report = await world.push()
    assert report.deleted == {K.POD: 1} and report.created == {K.POD: 1}
    assert world.actual() == world.expected()


async def test_a_refused_object_is_dead_lettered_and_the_rest_goes_on(world: World) -> None:
    many(world.rows, pods=20)
    world.rows.pod("default", "broken", node="n1",
                   containers=[("", "busybox", "containerd://b1")])  # bk-cmdb needs a name
    report = await world.push(PushMode.FULL)
    assert report.created[K.POD] == 20 and report.error is None
    (letter,) = report.dead_letters
    assert (letter.kind, letter.name, letter.action, letter.code) == \
        (K.POD, "broken", "create", 1199010)
    assert "container name" in letter.message
    assert "bk-cmdb refused to create pod 'broken'" in letter.line()
    assert report.pending == {Reason.DEAD_LETTER: 1}
    assert world.pusher.dead_letters("c1") == [letter]
    world.sim.stats.reset()
    report = await world.push()
    assert report.requests == 0 and report.pending == {Reason.DEAD_LETTER: 1}, \
        "not retried while its row is unchanged"
    report = await world.push(PushMode.FULL)
    assert len(report.dead_letters) == 1, "a full reconcile tries it again"
    world.rows.touch(Table.PODS, "pod-default-broken",
                     containers='[{"name": "c", "image": "busybox", "container_id": "x://1"}]')
    report = await world.push()
    assert report.created == {K.POD: 1} and report.pending_total == 0
    assert world.pusher.dead_letters("c1") == []
    assert world.actual() == world.expected()


async def test_a_refused_delete_is_dead_lettered_and_the_rest_is_deleted(world: World) -> None:
    many(world.rows, pods=2)
    world.rows.namespace("extra")
    await world.converge()
    ns_id = next(i for i, n in world.sim.model.namespaces.items() if n["name"] == "extra")
    world.sim.model.create_workloads("gameDeployment", {  # made by hand: we never list it
        "bk_biz_id": BIZ, "data": [{"bk_namespace_id": ns_id, "name": "hand-made"}]})
    world.rows.delete(Table.NAMESPACES, "ns-extra")
    world.rows.delete(Table.PODS, "pod-default-web-0")
    report = await world.push()
    assert report.deleted == {K.POD: 1}
    (letter,) = report.dead_letters
    assert (letter.kind, letter.action, letter.code) == (K.NAMESPACE, "delete", 1199006)
    assert report.pending == {Reason.DEAD_LETTER: 1}


async def test_bad_credentials_stop_the_push_without_dead_letters(world: World,
                                                                   fake_time: FakeTime) -> None:
    many(world.rows, pods=3)
    sim = world.sim
    wrong = settings_for(sim, app_secret="wrong") if sim.auth.mode == "gateway" else \
        settings_for(sim, username="")
    async with BkCmdbClient(wrong, clock=fake_time.clock, sleep=fake_time.sleep) as client:
        pusher = Pusher(client=client, desired=world.desired, ledger=world.ledger)
        report = await pusher.push(world.target(), mode=PushMode.FULL)
    assert report.error is not None and report.error.kind == "AuthError"
    assert not report.error.transient and report.dead_letters == []
    assert report.requests == 1 and report.pending_total > 0
    assert "wrong" not in report.summary() and sim.stats.rejected_auth == 1


class DownTables(MemoryDesiredState):
    """The CMDB store is unreachable."""

    async def rows(self, cluster: str, table: Table) -> Sequence[Mapping[str, Any]]:
        raise ConnectionError("Lost connection to MySQL server during query")


async def test_an_unreachable_store_ends_the_push_with_an_error_not_a_crash(
        world: World) -> None:
    pusher = Pusher(client=world.client, desired=DownTables(), ledger=world.ledger)
    report = await pusher.push(world.target(), mode=PushMode.SWEEP)
    assert report.error is not None and report.error.transient
    assert report.error.kind == "ConnectionError" and "Lost connection" in report.error.message
    assert report.requests == 0 and world.requests() == 0
