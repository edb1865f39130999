"""The task runner on a manual clock: scheduling from reports, two runners racing for one
cluster, a runner killed mid-push (TEST-MATRIX row 39), a lost claim, a lost cluster,
graceful stop, the status board. Pushes are held at a precise point by gates, never by
sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pusher_support import ManualClock, World
from test_pusher_kube import small_cluster

from synchronizer.bkcmdb.pusher import (
    PUSH_JOB,
    ClusterTarget,
    LedgerEntry,
    MemoryDesiredState,
    MemoryLedger,
    MemoryTaskQueue,
    ObjectKind,
    Pusher,
    PushMode,
    PushStatusBoard,
    RunnerSettings,
    Table,
    TaskRunner,
)

SETTINGS = RunnerSettings(interval=600, period=10, sweep=60, retry_pending=30, hold=300,
                          backoff_initial=5, backoff_max=300, poll=2, grace=10)


class Gate:
    """Holds the first caller until released; says when it got there."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.armed = False

    async def passing(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            await self.release.wait()


class HeldDesired(MemoryDesiredState):
    """Tables whose next read waits at a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    async def rows(self, cluster: str, table: Table) -> Sequence[Mapping[str, Any]]:
        await self.gate.passing()
        return await super().rows(cluster, table)

    async def changed_since(self, cluster: str, table: Table,
                            version: int) -> Sequence[Mapping[str, Any]]:
        await self.gate.passing()
        return await super().changed_since(cluster, table, version)


class HeldLedger(MemoryLedger):
    """A ledger whose next write of pods waits at a gate: bk-cmdb has made the pods, the
    ledger does not know yet — the moment a runner dies in row 39."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    async def write(self, cluster: str, *, upsert: Sequence[LedgerEntry] = (),
                    delete: Sequence[tuple[ObjectKind, str]] = ()) -> None:
        if any(e.kind is ObjectKind.POD for e in upsert):
            await self.gate.passing()
        await super().write(cluster, upsert=upsert, delete=delete)


class WatchedBoard(PushStatusBoard):
    """A status board a test can wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def pushed(self, cluster: str, report: Any, *, at: float) -> None:
        super().pushed(cluster, report, at=at)
        self.changed.set()

    def dropped(self, cluster: str) -> None:
        super().dropped(cluster)
        self.changed.set()

    async def until(self, condition: Any) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()


def runner(world: World, clock: ManualClock, queue: MemoryTaskQueue, owner: str = "a", *,
           pusher: Pusher | None = None, targets: Any = None,
           board: PushStatusBoard | None = None) -> TaskRunner:
    return TaskRunner(pusher=pusher or world.pusher, queue=queue, owner=owner, clock=clock,
                      sleep=clock.sleep, settings=SETTINGS, observer=board,
                      targets=targets or (lambda: {"c1": world.target()}))


def task_of(queue: MemoryTaskQueue, cluster: str = "c1") -> Any:
    return queue.tasks[(cluster, PUSH_JOB)]


async def test_the_next_run_follows_the_report(world: World) -> None:
    small_cluster(world.rows)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    board = PushStatusBoard()
    run = runner(world, clock, queue, board=board)
    (first,) = await run.run_once()
    assert first.mode is PushMode.FULL and first.pending_total == 0
    assert task_of(queue).next_start == clock.now + SETTINGS.period
    assert await run.run_once() == [], "not due yet"
    modes = []
    for _ in range(8):  # 80 s: a sweep after 60 s, increments otherwise
        clock.now = task_of(queue).next_start
        (report,) = await run.run_once()
        modes.append(report.mode)
    assert modes == [PushMode.INCREMENTAL] * 5 + [PushMode.SWEEP] + [PushMode.INCREMENTAL] * 2
    world.rows.pod("default", "waiting", node="n1", containers=[("a", "b", "")])
    clock.now = task_of(queue).next_start
    (report,) = await run.run_once()
    assert report.pending_total == 1
    assert task_of(queue).next_start == clock.now + SETTINGS.retry_pending
    assert task_of(queue).pending == 1 and "pending 1" in task_of(queue).result
    clock.now = task_of(queue).next_start + SETTINGS.interval
    (report,) = await run.run_once()
    assert report.mode is PushMode.FULL, "a full reconcile every interval"
    status = board.snapshot()["c1"]
    assert status["pending"] == 1 and status["pending_by_reason"] == {
        "containers_without_id": 1}
    assert status["last_full_at"] == clock.now and status["last_error"] == ""
    assert board.pending() == {"c1": 1}


async def test_two_runners_racing_for_one_cluster_run_it_once(world: World) -> None:
    desired = HeldDesired()
    world.desired = world.rows.desired = desired
    small_cluster(world.rows)
    pusher_a = Pusher(client=world.client, desired=desired, ledger=world.ledger)
    pusher_b = Pusher(client=world.client, desired=desired, ledger=world.ledger)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    a = runner(world, clock, queue, "a", pusher=pusher_a)
    b = runner(world, clock, queue, "b", pusher=pusher_b)
    desired.gate.armed = True
    running = asyncio.create_task(a.run_once())
    await desired.gate.reached.wait()
    assert a.running == ["c1"]
    assert await b.run_once() == [], "claimed by a: b waits"
    desired.gate.release.set()
    (report,) = await running
    assert report.error is None and task_of(queue).owner == "a"
    clock.now = task_of(queue).next_start
    (report,) = await b.run_once()
    assert report.mode is PushMode.FULL, "b has not pushed this cluster before"
    clock.now = task_of(queue).next_start
    (report,) = await a.run_once()
    assert report.mode is PushMode.FULL, "b pushed in between: a's cache may be stale"
    assert report.changed == 0 and world.actual() == world.expected()


async def test_a_runner_killed_mid_push_is_replaced_after_the_claim_expires(
        world: World) -> None:
    """TEST-MATRIX row 39: bk-cmdb made the pods, the runner died before writing them
    down; the next runner takes the task after its timeout, adopts, and converges."""
    ledger = HeldLedger()
    pusher_a = Pusher(client=world.client, desired=world.desired, ledger=ledger)
    pusher_b = Pusher(client=world.client, desired=world.desired, ledger=ledger)
    small_cluster(world.rows)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    a = runner(world, clock, queue, "a", pusher=pusher_a)
    b = runner(world, clock, queue, "b", pusher=pusher_b)
    ledger.gate.armed = True
    killed = asyncio.create_task(a.run_once())
    await ledger.gate.reached.wait()
    assert len(world.sim.model.pods) == 5 and not any(
        k == ObjectKind.POD for k, _ in ledger.clusters["c1"])
    killed.cancel()  # the process dies: nothing closes the task
    with pytest.raises(asyncio.CancelledError):
        await killed
    taken_until = task_of(queue).next_start
    assert taken_until == clock.now + SETTINGS.hold and task_of(queue).finished_at is None
    clock.advance(SETTINGS.hold - 1)
    assert await b.run_once() == [], "the claim still holds"
    clock.advance(2)
    (report,) = await b.run_once()
    assert report.mode is PushMode.FULL and report.error is None
    assert report.adopted[ObjectKind.POD] == 5 and report.created == {}
    assert len(world.sim.model.pods) == 5, "no duplicate"
    assert world.actual() == world.expected()
    assert task_of(queue).owner == "b" and task_of(queue).token == 2


async def test_a_runner_whose_claim_was_taken_over_stops_without_closing(
        world: World) -> None:
    desired = HeldDesired()
    world.desired = world.rows.desired = desired
    small_cluster(world.rows)
    pusher_a = Pusher(client=world.client, desired=desired, ledger=world.ledger)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    a = runner(world, clock, queue, "a", pusher=pusher_a)
    b = runner(world, clock, queue, "b")
    desired.gate.armed = True
    stuck = asyncio.create_task(a.run_once())
    await desired.gate.reached.wait()
    clock.advance(SETTINGS.hold + 1)  # a looks dead: its keeper has not run yet
    (report,) = await b.run_once()
    assert report.error is None and task_of(queue).owner == "b"
    closed = task_of(queue)
    assert await stuck == [], "a's keeper found the claim lost and interrupted the push"
    assert task_of(queue) == closed, "a closed nothing"
    desired.gate.release.set()


async def test_a_cluster_no_longer_owned_is_handed_back_at_once(world: World) -> None:
    desired = HeldDesired()
    world.desired = world.rows.desired = desired
    small_cluster(world.rows)
    pusher = Pusher(client=world.client, desired=desired, ledger=world.ledger)
    owned = {"c1": world.target()}
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    board = PushStatusBoard()
    a = runner(world, clock, queue, pusher=pusher, targets=lambda: owned, board=board)
    assert len(await a.run_once()) == 1 and board.pending() == {"c1": 0}
    clock.now = task_of(queue).next_start
    desired.gate.armed = True
    running = asyncio.create_task(a.run_once())
    await desired.gate.reached.wait()
    owned.clear()
    clock.advance(SETTINGS.hold / 3)  # the keeper looks
    assert await running == []
    assert task_of(queue).next_start == clock.now and task_of(queue).result.startswith(
        "interrupted")
    await a.run_once()
    assert board.pending() == {}, "its gauge series is dropped"


async def test_stop_lets_a_push_finish_within_the_grace_then_interrupts(world: World) -> None:
    desired = HeldDesired()
    world.desired = world.rows.desired = desired
    small_cluster(world.rows)
    pusher = Pusher(client=world.client, desired=desired, ledger=world.ledger)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    board = WatchedBoard()
    a = runner(world, clock, queue, pusher=pusher, board=board)
    loop = asyncio.create_task(a.run())
    await board.until(lambda: board.clusters)  # the first push; then workers idle
    clock.advance(SETTINGS.period)
    desired.gate.armed = True
    await desired.gate.reached.wait()
    a.stop()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not loop.done(), "the running push gets its grace"
    clock.advance(SETTINGS.grace)
    await loop
    task = task_of(queue)
    assert task.next_start == clock.now and task.result == "interrupted (incremental push)"
    assert a.running == []


async def test_run_pushes_again_when_due_and_a_removed_cluster_is_dropped(
        world: World) -> None:
    small_cluster(world.rows)
    targets = {"c1": world.target()}
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    board = WatchedBoard()
    a = runner(world, clock, queue, targets=lambda: targets, board=board)
    loop = asyncio.create_task(a.run())
    await board.until(lambda: "c1" in board.clusters)
    world.rows.pod("default", "late", node="n1")
    clock.advance(SETTINGS.period)
    await board.until(lambda: board.clusters["c1"].pushes == 2)
    assert world.actual() == world.expected()
    targets["c1"] = ClusterTarget(id="c1", biz_id=world.target().biz_id, removed=True)
    clock.advance(SETTINGS.period)
    await board.until(lambda: "c1" not in board.clusters)
    assert ("c1", PUSH_JOB) not in queue.tasks
    assert not world.sim.model.clusters and board.clusters == {}
    a.stop()
    await loop


class FlakyQueue(MemoryTaskQueue):
    """A task store whose first close fails (a database outage at the worst moment)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.failures = 1
        self.failed = asyncio.Event()
        self.closed = asyncio.Event()

    async def close(self, task: Any, **outcome: Any) -> bool:
        if self.failures:
            self.failures -= 1
            self.failed.set()
            raise ConnectionError("the task store is down")
        self.closed.set()
        return await super().close(task, **outcome)


async def test_a_failed_close_leaves_the_claim_to_expire_and_the_runner_goes_on(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    small_cluster(world.rows)
    clock = ManualClock()
    queue = FlakyQueue(clock)
    a = runner(world, clock, queue)
    loop = asyncio.create_task(a.run())
    await queue.failed.wait()  # the worker logged it before it next yielded
    assert "could not be closed" in caplog.text and not loop.done()
    clock.advance(SETTINGS.hold)  # the claim expires; the same runner takes it again
    await queue.closed.wait()
    assert task_of(queue).token == 2 and task_of(queue).error == ""
    a.stop()
    await loop


async def test_resweep_makes_the_next_push_read_every_row(world: World) -> None:
    small_cluster(world.rows)
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    run = runner(world, clock, queue)
    run.resweep("c1")  # not pushed yet: nothing to mark (its first push is full anyway)
    (first,) = await run.run_once()
    assert first.mode is PushMode.FULL
    clock.now = task_of(queue).next_start
    (second,) = await run.run_once()
    assert second.mode is PushMode.INCREMENTAL
    run.resweep("c1")  # the tables had a full sync
    clock.now = task_of(queue).next_start
    (third,) = await run.run_once()
    assert third.mode is PushMode.SWEEP and third.rows_read > second.rows_read
    clock.now = task_of(queue).next_start
    (fourth,) = await run.run_once()
    assert fourth.mode is PushMode.INCREMENTAL
