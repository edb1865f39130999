"""MariaDB-only faults: a lock held past the store's timeout, killed pooled connections.

Both must surface as `reconciler.Transient` (the engine retries with backoff) and leave the
pool usable: the broken connection is discarded, the next apply succeeds.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pymysql
import pytest
from cmdb_support import CLUSTER, PodsView, active, expected, with_option

from reconciler import ApplyResult, Fence, Fenced, Transient, WriteGroup
from synchronizer.cmdb import open_store
from synchronizer.kinds import PODS


def admin(dsn: str) -> pymysql.connections.Connection:
    u = urlsplit(dsn)
    return pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", database=u.path.lstrip("/"))


async def test_lock_held_past_timeout_is_transient(mariadb_dsn):
    mysql_dsn = mariadb_dsn
    store = PodsView(await open_store(with_option(mysql_dsn, "timeout", "1")))
    try:
        await store.apply(CLUSTER, [active("p1", 5)])
        other = admin(mysql_dsn)
        try:
            with other.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT * FROM pods WHERE uid = 'p1' FOR UPDATE")
                with pytest.raises(Transient, match="no answer within 1 s"):
                    await store.apply(CLUSTER, [active("p1", 9, 1)])
                other.rollback()
        finally:
            other.close()
        assert await store.apply(CLUSTER, [active("p1", 9, 1)]) == ApplyResult(written=1)
        assert await store.rows(CLUSTER) == [expected(active("p1", 9, 1))]
    finally:
        await store.close()


async def _writing_pods(conn: pymysql.connections.Connection) -> None:
    """Return once another session runs a statement on `pods` (one that cannot finish
    while the test holds the rows: another process's state, polled, bounded)."""
    async with asyncio.timeout(20):
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE"
                            " ID <> CONNECTION_ID() AND COMMAND <> 'Sleep'"
                            " AND INFO LIKE '%%`pods`%%'")
                (running,) = cur.fetchone()
            if running:
                return
            await asyncio.sleep(0.05)


async def test_a_write_stuck_behind_row_locks_does_not_hold_up_lease_renewals(mariadb_dsn):
    """Every cluster's lease is renewed in one statement; a fenced write used to lock its
    lease row first and then wait for its rows, so one cluster's stuck write held up the
    renewals of all (a lock wait may last 50 s, a lease 30). The fence is checked last."""
    store = PodsView(await open_store(mariadb_dsn))
    fence = Fence(owner="a", epoch=1)
    try:
        assert await store.acquire_many([(CLUSTER, fence), ("other", fence)], 30) \
            == [True, True]
        await store.apply(CLUSTER, [active("p1", 5)], fence=fence)
        other = admin(mariadb_dsn)
        try:
            with other.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT * FROM pods WHERE uid = 'p1' FOR UPDATE")
            stuck = asyncio.ensure_future(
                store.apply(CLUSTER, [active("p1", 9, 1)], fence=fence))
            await _writing_pods(other)
            async with asyncio.timeout(10):  # with the lease row locked: 50 s, then 1205
                renewed = await store.acquire_many([(CLUSTER, fence), ("other", fence)], 30)
            assert renewed == [True, True]
            assert not stuck.done()
            other.rollback()
        finally:
            other.close()
        assert await stuck == ApplyResult(written=1)
        assert await store.rows(CLUSTER) == [expected(active("p1", 9, 1))]
    finally:
        await store.close()


async def test_fenced_at_the_end_of_a_many_cluster_transaction_writes_the_others(
    mariadb_dsn
):
    """A cluster taken over while its rows were being written (the check comes last) is
    refused alone: the transaction is written again without it."""
    store = PodsView(await open_store(mariadb_dsn))
    mine, theirs = Fence(owner="a", epoch=1), Fence(owner="b", epoch=2)
    try:
        assert await store.acquire_many([(CLUSTER, mine), ("other", mine)], 30) \
            == [True, True]
        assert await store.acquire("other", theirs, 30)  # a higher epoch takes it over
        table = store.store.table(PODS)
        results = await store.store.apply_groups([
            WriteGroup(store=table, cluster=CLUSTER, records=[active("p1", 5)], fence=mine),
            WriteGroup(store=table, cluster="other", records=[active("q1", 5)], fence=mine),
        ])
        assert results[0] == ApplyResult(written=1)
        assert isinstance(results[1], Fenced) and "b epoch 2" in str(results[1])
        assert await store.rows("other") == []
        assert await store.rows(CLUSTER) == [expected(active("p1", 5))]
    finally:
        await store.close()


async def test_killed_connections_are_transient_then_replaced(mariadb_dsn):
    mysql_dsn = mariadb_dsn
    store = PodsView(await open_store(mysql_dsn))
    try:
        await store.apply(CLUSTER, [active("p1", 5)])
        database = urlsplit(mysql_dsn).path.lstrip("/")
        other = admin(mysql_dsn)
        try:
            with other.cursor() as cur:
                cur.execute("SELECT id FROM information_schema.processlist"
                            " WHERE db = %s AND id <> CONNECTION_ID()", (database,))
                victims = [row[0] for row in cur.fetchall()]
                assert victims
                for victim in victims:
                    cur.execute(f"KILL CONNECTION {int(victim)}")
        finally:
            other.close()
        try:
            await store.apply(CLUSTER, [active("p1", 7, 1)])
        except Transient:
            pass  # the pooled connection was dead; the engine would retry
        assert await store.apply(CLUSTER, [active("p1", 9, 2)]) == ApplyResult(written=1)
        assert await store.rows(CLUSTER) == [expected(active("p1", 9, 2))]
    finally:
        await store.close()


async def test_aiomysql_driver_applies_the_same_rule(mariadb_dsn):
    """The alternative driver (text protocol, multi-row rewrite) keeps rule and counts."""
    store = PodsView(await open_store(mariadb_dsn.replace("mysql://", "mysql+aiomysql://", 1)))
    try:
        a5, a9, b7 = active("p1", 5, 0), active("p1", 9, 0), active("p1", 7, 1)
        b9 = active("p1", 9, 1)
        assert await store.apply(CLUSTER, [a5, active("p2", 5)]) == ApplyResult(written=2)
        assert await store.apply(CLUSTER, [a9, active("p2", 4, 1)]) == ApplyResult(0, 2)
        assert await store.apply(CLUSTER, [b9]) == ApplyResult(written=1, unchanged=0)
        assert await store.apply(CLUSTER, [b7]) == ApplyResult(written=0, unchanged=1)
        result = await store.apply(CLUSTER, [active("p3", 1), active("p4", 1, name="x" * 300)])
        assert (result.written, [k for k, _ in result.rejected]) == (1, ["p4"])
        rows = await store.rows(CLUSTER)
        assert rows[0] == expected(b9) and [r["uid"] for r in rows] == ["p1", "p2", "p3"]
    finally:
        await store.close()
