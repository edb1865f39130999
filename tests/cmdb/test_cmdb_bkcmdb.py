"""The bk-cmdb pusher's tables on real MariaDB and SQLite: the durable task queue (one
claim at a time, at-least-once, fenced closes), the ledger, and the desired state read
from the kind tables — each held to the in-memory reference of `synchronizer.bkcmdb.pusher`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pymysql
import pytest
from cmdb_support import CLUSTER, active, deleted

from synchronizer.bkcmdb.pusher import PUSH_JOB, LedgerEntry, MemoryTaskQueue, ObjectKind, Table
from synchronizer.cmdb import BkCmdbStore, open_store
from synchronizer.cmdb.bkcmdb_mysql import MySQLTaskQueue, skips_locked
from synchronizer.cmdb.bkcmdb_schema import version_index
from synchronizer.cmdb.bkcmdb_tables import BkCmdbTables
from synchronizer.kinds import PODS


class Clock:
    """Wall time that moves only when the test says so (shared by every taker)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(store_dsn: str) -> AsyncIterator[Any]:
    opened = await open_store(store_dsn)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def other(store_dsn: str, store: Any) -> AsyncIterator[Any]:
    """A second store on the same database: another instance, its own connections."""
    opened = await open_store(store_dsn)
    try:
        yield opened
    finally:
        await opened.close()


def tables(store: Any, clock: Clock) -> BkCmdbTables:
    assert isinstance(store, BkCmdbStore)
    return store.bkcmdb_tables(clock=clock)


# -- the task queue -------------------------------------------------------------------------------

async def test_a_task_is_made_once_due_now(store: Any, clock: Clock) -> None:
    tasks = tables(store, clock).tasks
    await tasks.ensure("c1", PUSH_JOB)
    clock.now += 5
    await tasks.ensure("c1", PUSH_JOB)
    (task,) = await tasks.status("c1")
    assert (task.next_start, task.token, task.owner, task.attempts) == \
        (clock.now - 5, 0, "", 0)
    assert await tasks.clusters(PUSH_JOB) == ["c1"]


async def test_a_claim_is_exclusive_until_it_expires_and_a_stale_token_cannot_close(
        store: Any, other: Any, clock: Clock) -> None:
    mine, theirs = tables(store, clock).tasks, tables(other, clock).tasks
    await mine.ensure("c1", PUSH_JOB)
    taken = await mine.take("a", 60, clusters=["c1"])
    assert taken is not None and (taken.owner, taken.token, taken.next_start,
                                  taken.started_at) == ("a", 1, clock.now + 60, clock.now)
    assert await theirs.take("b", 60, clusters=["c1"]) is None
    clock.now += 59
    assert await theirs.take("b", 60, clusters=["c1"]) is None
    kept = await mine.extend(taken, 60)
    assert kept is not None and kept.next_start == clock.now + 60
    assert await mine.extend(kept, 60) is not None, "an extend to the same end is kept"
    clock.now += 61  # "a" presumed dead: its claim expired
    again = await theirs.take("b", 60, clusters=["c1"])
    assert again is not None and (again.owner, again.token) == ("b", 2)
    assert await mine.extend(taken, 60) is None, "the old claim is lost"
    assert not await mine.close(taken, result="late", error="", attempts=0,
                                next_start=clock.now)
    assert (await mine.status("c1"))[0].result == "", "the late close changed nothing"
    assert await theirs.close(again, result="ok", error="bk-cmdb: code 1199002 busy",
                              attempts=2, next_start=clock.now + 10, pending=3)
    (task,) = await mine.status("c1")
    assert (task.result, task.error, task.attempts, task.pending, task.next_start,
            task.finished_at, task.owner) == ("ok", "bk-cmdb: code 1199002 busy", 2, 3,
                                              clock.now + 10, clock.now, "b")
    assert [t.cluster for t in await mine.pending()] == ["c1"]


async def test_two_instances_racing_for_one_task_one_wins(
        store: Any, other: Any, clock: Clock) -> None:
    queues = [tables(store, clock).tasks, tables(other, clock).tasks]
    await queues[0].ensure("c1", PUSH_JOB)
    for round_ in range(10):
        won = await asyncio.gather(*(queues[i % 2].take(f"t{i}", 30, clusters=["c1"])
                                     for i in range(6)))
        winners = [t for t in won if t is not None]
        assert len(winners) == 1, (round_, won)
        assert winners[0].token == round_ + 1
        clock.now += 31  # the winner "dies": its claim expires, the task is due again


async def test_only_owned_clusters_are_taken_longest_due_first_and_drop(
        store: Any, clock: Clock) -> None:
    tasks = tables(store, clock).tasks
    for cluster in ("c1", "c2", "c3"):
        await tasks.ensure(cluster, PUSH_JOB)
        clock.now += 1
    first = await tasks.take("a", 60, clusters=["c2", "c3"])
    second = await tasks.take("a", 60, clusters=["c3", "c2"])
    assert (first.cluster, second.cluster) == ("c2", "c3")  # type: ignore[union-attr]
    assert await tasks.take("a", 60, clusters=["c2", "c3", "c9"]) is None
    assert await tasks.take("a", 60, clusters=[]) is None
    await tasks.drop("c2", PUSH_JOB)
    assert await tasks.status("c2") == [] and await tasks.clusters(PUSH_JOB) == ["c1", "c3"]


async def test_the_sql_queue_answers_as_the_memory_reference(store: Any, clock: Clock) -> None:
    """One scripted history on both; every answer and the final rows must agree."""
    sql, memory = tables(store, clock).tasks, MemoryTaskQueue(clock=clock)
    answers: list[tuple[Any, Any]] = []

    async def both(name: str, *args: Any, **kw: Any) -> Any:
        got = [await getattr(q, name)(*args, **kw) for q in (sql, memory)]
        answers.append((name, got))
        assert got[0] == got[1], (name, got)
        return got[0]

    for cluster in ("a", "b", "c"):
        await both("ensure", cluster, PUSH_JOB)
        clock.now += 0.5
    owned = ["a", "b", "c"]
    t1 = await both("take", "x", 20, clusters=owned)
    t2 = await both("take", "y", 20, clusters=owned)
    await both("close", t1, result="r1", error="", attempts=0, next_start=clock.now + 5,
               pending=1)
    clock.now += 6
    t3 = await both("take", "x", 20, clusters=owned)
    await both("extend", t3, 40)
    clock.now += 30
    await both("close", t2, result="late", error="e", attempts=1, next_start=clock.now)
    await both("take", "z", 20, clusters=owned)
    await both("pending")
    await both("clusters", PUSH_JOB)
    await both("drop", "b", PUSH_JOB)
    await both("clusters", PUSH_JOB)
    for cluster in owned:
        await both("status", cluster)


@pytest.mark.parametrize("skip_locked", [True, False])
async def test_mysql_take_passes_a_row_another_session_holds(
        mysql_dsn: str, clock: Clock, skip_locked: bool) -> None:
    """A row locked by a taker in the middle of its transaction: SKIP LOCKED moves on to
    the next due task; without it (old servers), the conditional UPDATE waits and then
    sees that the token moved, and takes the next candidate instead."""
    opened = await open_store(mysql_dsn)
    try:
        assert skips_locked(opened.server), opened.server
        queue = MySQLTaskQueue(opened.conn, clock=clock, skip_locked=skip_locked)
        for cluster in ("c1", "c2"):
            await queue.ensure(cluster, PUSH_JOB)
            clock.now += 1
        settings = opened.settings
        raw = pymysql.connect(host=settings.host, port=settings.port, user=settings.user,
                              password=settings.password or "", database=settings.database,
                              autocommit=False)
        try:
            with raw.cursor() as cur:
                cur.execute("SELECT token FROM bkcmdb_tasks WHERE cluster_id = 'c1' FOR UPDATE")
                if skip_locked:
                    taken = await queue.take("a", 60, clusters=["c1", "c2"])
                else:
                    pending = asyncio.create_task(queue.take("a", 60, clusters=["c1", "c2"]))
                    await _blocked_on_update(settings)  # the taker waits on c1's row lock ...
                    assert not pending.done()
                    cur.execute("UPDATE bkcmdb_tasks SET token = token + 1, next_start = %s"
                                " WHERE cluster_id = 'c1'", (clock.now + 100,))
                    raw.commit()  # ... which another taker claimed meanwhile
                    taken = await pending
            assert taken is not None and taken.cluster == "c2"
        finally:
            raw.rollback()
            raw.close()
    finally:
        await opened.close()


async def _blocked_on_update(settings: Any) -> None:
    """Return once a session of the test database waits in an UPDATE of the tasks."""
    def waiting() -> int:
        conn = pymysql.connect(host=settings.host, port=settings.port, user=settings.user,
                               password=settings.password or "", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s"
                            " AND INFO LIKE 'UPDATE bkcmdb_tasks%%'", (settings.database,))
                return int(cur.fetchone()[0])
        finally:
            conn.close()
    async with asyncio.timeout(30):
        while not await asyncio.to_thread(waiting):
            await asyncio.sleep(0.01)


# -- the ledger -----------------------------------------------------------------------------------

def _entries() -> list[LedgerEntry]:
    return [
        LedgerEntry(kind=ObjectKind.CLUSTER, uid=CLUSTER, bk_id=7, digest="", name="a",
                    parents={"biz": 2}),
        LedgerEntry(kind=ObjectKind.NAMESPACE, uid="ns-1", bk_id=11, digest="d1",
                    name="default", parents={"cluster": 7}),
        LedgerEntry(kind=ObjectKind.POD, uid="p-1", bk_id=5, digest="d2", name="web-0",
                    namespace="default", bk_kind="deployment",
                    parents={"namespace": 11, "node": 3, "workload": 9, "host": 1}),
        LedgerEntry(kind=ObjectKind.CONTAINER_POD, uid="p-1", bk_id=6, digest="d3",
                    name="web-0", namespace="default", parents={"biz": 2, "module": 4}),
    ]


def _by_key(entries: Any) -> dict[Any, LedgerEntry]:
    return {e.key: e for e in entries}


async def test_the_ledger_round_trip(store: Any, clock: Clock) -> None:
    ledger = tables(store, clock).ledger
    entries = _entries()
    await ledger.write(CLUSTER, upsert=entries)
    await ledger.write("other", upsert=entries[:1])
    assert _by_key(await ledger.entries(CLUSTER)) == _by_key(entries)
    changed = LedgerEntry(kind=ObjectKind.POD, uid="p-1", bk_id=8, digest="d4", name="web-0",
                          namespace="default", bk_kind="pods", parents={"namespace": 11})
    await ledger.write(CLUSTER, upsert=[changed],
                       delete=[(ObjectKind.NAMESPACE, "ns-1"), (ObjectKind.NODE, "never")])
    want = _by_key(entries)
    del want[(ObjectKind.NAMESPACE, "ns-1")]
    want[changed.key] = changed
    assert _by_key(await ledger.entries(CLUSTER)) == want
    assert len(await ledger.entries("other")) == 1


async def test_a_ledger_write_is_all_or_nothing(store: Any, clock: Clock) -> None:
    ledger = tables(store, clock).ledger
    await ledger.write(CLUSTER, upsert=_entries()[:2])
    bad = LedgerEntry(kind=ObjectKind.POD, uid="u" * 500, bk_id=1)  # longer than the key
    with pytest.raises(Exception):  # noqa: B017 - the store's error, whichever class it is
        await ledger.write(CLUSTER, upsert=[_entries()[2], bad],
                           delete=[(ObjectKind.CLUSTER, CLUSTER)])
    assert _by_key(await ledger.entries(CLUSTER)) == _by_key(_entries()[:2])


# -- the desired state ----------------------------------------------------------------------------

async def test_the_desired_state_is_the_tables(store: Any, clock: Clock) -> None:
    pods = store.table(PODS)
    await pods.apply(CLUSTER, [active(f"p{i}", 10 + i, variant=i) for i in range(6)])
    await pods.apply(CLUSTER, [deleted("p2", 30, variant=2), active("p4", 31, variant=9)])
    await pods.apply("other", [active("q", 40)])
    desired = tables(store, clock).desired

    def plain(rows: Any) -> dict[str, dict[str, Any]]:
        out = {}
        for row in rows:
            found = dict(row)
            found.pop("query_at")
            out[row["uid"]] = found
        return out

    stored = plain(await pods.rows(CLUSTER))
    assert plain(await desired.rows(CLUSTER, Table.PODS)) == stored
    assert set(plain(await desired.changed_since(CLUSTER, Table.PODS, 14))) == \
        {"p2", "p4", "p5"}
    assert plain(await desired.changed_since(CLUSTER, Table.PODS, 30)) == \
        {"p4": stored["p4"]}
    assert await desired.changed_since(CLUSTER, Table.PODS, 31) == []
    assert await desired.rows(CLUSTER, Table.NODES) == []
    assert stored["p2"]["state"] == "Deleted"


async def test_step_three_adds_the_version_index_to_every_kind_table(
        store: Any, store_dsn: str) -> None:
    again = await open_store(store_dsn)  # a second migration run changes nothing
    await again.close()
    for table in Table:
        name = version_index(str(table))
        if store_dsn.startswith("sqlite"):
            def names(conn: Any, table: Table = table) -> set[str]:
                return {row[1] for row in conn.execute(f"PRAGMA index_list({table})")}
            assert name in await store._reader.call(names)
        else:
            found = await store.conn.query("index", "SELECT COUNT(*) FROM information_schema"
                                           ".STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND"
                                           " INDEX_NAME = %s", (name,))
            assert found[0][0] == 2, name  # two columns
