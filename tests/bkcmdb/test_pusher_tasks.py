"""The durable task queue (the MWS pattern): a claim moves `next_start`, a token fences
late closes, an abandoned claim is taken again once it expires."""

from __future__ import annotations

from pusher_support import ManualClock

from synchronizer.bkcmdb.pusher import PUSH_JOB, MemoryTaskQueue


async def test_a_task_is_created_once_and_due_at_once() -> None:
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    await queue.ensure("c1", PUSH_JOB)
    clock.advance(5)
    await queue.ensure("c1", PUSH_JOB)
    (task,) = await queue.status("c1")
    assert task.next_start == clock.now - 5 and task.token == 0


async def test_a_claim_keeps_everyone_else_out_until_it_expires() -> None:
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    await queue.ensure("c1", PUSH_JOB)
    mine = await queue.take("a", 60, clusters=["c1"])
    assert mine is not None and (mine.owner, mine.token, mine.next_start) == \
        ("a", 1, clock.now + 60)
    assert await queue.take("b", 60, clusters=["c1"]) is None
    clock.advance(59)
    assert await queue.take("b", 60, clusters=["c1"]) is None
    assert (kept := await queue.extend(mine, 60)) is not None and kept.next_start == \
        clock.now + 60
    clock.advance(61)
    theirs = await queue.take("b", 60, clusters=["c1"])
    assert theirs is not None and theirs.token == 2 and theirs.owner == "b"
    assert await queue.extend(mine, 60) is None, "a presumed-dead runner lost its claim"
    assert not await queue.close(mine, result="late", error="", attempts=0,
                                 next_start=clock.now)
    assert (await queue.status("c1"))[0].result == "", "the late close changed nothing"
    assert await queue.close(theirs, result="ok", error="", attempts=0,
                             next_start=clock.now + 10, pending=3)
    (task,) = await queue.status("c1")
    assert (task.result, task.pending, task.next_start, task.finished_at) == \
        ("ok", 3, clock.now + 10, clock.now)


async def test_only_owned_clusters_are_taken_the_longest_due_first() -> None:
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    for cluster in ("c1", "c2", "c3"):
        await queue.ensure(cluster, PUSH_JOB)
        clock.advance(1)
    assert (await queue.take("a", 60, clusters=["c2", "c3"])).cluster == "c2"  # type: ignore
    assert (await queue.take("a", 60, clusters=["c2", "c3"])).cluster == "c3"  # type: ignore
    assert await queue.take("a", 60, clusters=["c2", "c3", "c9"]) is None
    assert await queue.take("a", 60, clusters=[]) is None


async def test_pending_lists_what_is_not_done_and_drop_removes() -> None:
    clock = ManualClock()
    queue = MemoryTaskQueue(clock=clock)
    for cluster in ("c1", "c2", "c3"):
        await queue.ensure(cluster, PUSH_JOB)
    for cluster, error, pending in (("c1", "", 0), ("c2", "HTTP 503", 0), ("c3", "", 7)):
        task = await queue.take("a", 60, clusters=[cluster])
        assert task is not None
        await queue.close(task, result="r", error=error, attempts=1 if error else 0,
                          next_start=clock.now + 5, pending=pending)
    assert [t.cluster for t in await queue.pending()] == ["c2", "c3"]
    await queue.drop("c3", PUSH_JOB)
    assert [t.cluster for t in await queue.pending()] == ["c2"]
    assert await queue.status("c3") == []
