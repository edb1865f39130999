"""Leases and fenced writes through the real stores, plus schema creation twice.

Expiry is made deterministic with a zero TTL (the lease is expired as soon as it is written
by the database's clock), so no test waits on a timer.
"""

from __future__ import annotations

import asyncio

import pytest
from cmdb_support import CLUSTER, active, expected

from reconciler import ApplyResult, Fence, Fenced
from synchronizer.cmdb import open_store
from synchronizer.cmdb.migrations import MIGRATIONS
from synchronizer.kinds import PODS

A1, A2, B1, B2 = (Fence(owner="a", epoch=1), Fence(owner="a", epoch=2),
                  Fence(owner="b", epoch=1), Fence(owner="b", epoch=2))


async def test_acquire_free_then_busy(store):
    assert await store.acquire(CLUSTER, A1, 30)
    assert not await store.acquire(CLUSTER, B1, 30)
    assert not await store.acquire(CLUSTER, Fence(owner="b", epoch=0), 30)
    lease = await store.lease(CLUSTER)
    assert (lease["owner"], lease["epoch"]) == ("a", 1)
    assert await store.acquire("other-cluster", B1, 30)


async def test_renew_same_owner_even_with_higher_epoch(store):
    assert await store.acquire(CLUSTER, A1, 30)
    first = (await store.lease(CLUSTER))["expires_at"]
    assert await store.acquire(CLUSTER, A1, 60)
    assert (await store.lease(CLUSTER))["expires_at"] > first
    assert await store.acquire(CLUSTER, A2, 30)
    assert (await store.lease(CLUSTER))["epoch"] == 2
    # An older incarnation of the same owner does not get the lease back.
    assert not await store.acquire(CLUSTER, A1, 30)


async def test_expired_lease_is_retaken_at_an_epoch_not_lower(store):
    assert await store.acquire(CLUSTER, A2, 0)
    assert not await store.acquire(CLUSTER, B1, 30)  # the epoch never goes down
    assert await store.acquire(CLUSTER, B2, 30)
    assert (await store.lease(CLUSTER))["owner"] == "b"


async def test_higher_epoch_takes_over_a_live_lease(store):
    assert await store.acquire(CLUSTER, A1, 30)
    assert await store.acquire(CLUSTER, B2, 30)
    assert not await store.acquire(CLUSTER, A1, 30)
    assert (await store.lease(CLUSTER))["owner"] == "b"


async def test_release_frees_only_for_the_holder_and_keeps_the_epoch(store):
    assert await store.acquire(CLUSTER, A2, 30)
    await store.release(CLUSTER, B1)
    await store.release(CLUSTER, A1)
    assert not await store.acquire(CLUSTER, B1, 30)  # still held by a@2
    await store.release(CLUSTER, A2)
    lease = await store.lease(CLUSTER)
    assert (lease["owner"], lease["epoch"]) == ("a", 2)  # expired, not deleted
    # an older owner that has not heard of the new one cannot take it back...
    assert not await store.acquire(CLUSTER, B1, 30)
    # ...an owner at the same or a higher epoch can, at once
    assert await store.acquire(CLUSTER, B2, 30)


async def test_standalone_epoch_zero_takes_any_expired_lease(store):
    assert await store.acquire(CLUSTER, B2, 30)
    await store.release(CLUSTER, B2)
    assert await store.acquire(CLUSTER, Fence(owner="solo", epoch=0), 30)


async def test_fenced_apply(store):
    with pytest.raises(Fenced):  # no lease at all
        await store.apply(CLUSTER, [active("p1", 5)], fence=A1)
    assert await store.acquire(CLUSTER, A1, 30)
    assert await store.apply(CLUSTER, [active("p1", 5)], fence=A1) == ApplyResult(written=1)
    assert await store.acquire(CLUSTER, B2, 30)  # takeover
    before = await store.rows(CLUSTER)
    for stale in (A1, A2, B1):
        with pytest.raises(Fenced):
            await store.apply(CLUSTER, [active("p1", 9, 1), active("p2", 9)], fence=stale)
    assert await store.rows(CLUSTER) == before
    assert await store.apply(CLUSTER, [active("p1", 9, 1)], fence=B2) == ApplyResult(written=1)
    assert await store.rows(CLUSTER) == [expected(active("p1", 9, 1))]


async def test_fenced_row_by_row_path_checks_the_fence_too(store):
    assert await store.acquire(CLUSTER, B1, 30)
    with pytest.raises(Fenced):
        await store.apply(CLUSTER, [active("p1", 5), active("p2", 5, name="x" * 300)], fence=A1)
    assert await store.rows(CLUSTER) == []
    assert await store.dead_letters(CLUSTER) == []


async def test_released_owner_is_fenced(store):
    assert await store.acquire(CLUSTER, A1, 30)
    await store.release(CLUSTER, A1)
    with pytest.raises(Fenced):
        await store.apply(CLUSTER, [active("p1", 5)], fence=A1)


async def test_concurrent_fenced_writers_of_one_owner(store):
    assert await store.acquire(CLUSTER, A1, 30)
    batches = [[active(f"s{s}-{i}", 5) for i in range(50)] for s in range(6)]
    results = await asyncio.gather(*(store.apply(CLUSTER, b, fence=A1) for b in batches))
    assert sum(r.written for r in results) == 300
    assert len(await store.load_index(CLUSTER)) == 300


async def test_schema_created_idempotently(store_dsn):
    first, second = await asyncio.gather(open_store(store_dsn), open_store(store_dsn))
    try:
        await first.table(PODS).apply(CLUSTER, [active("p1", 5)])
    finally:
        await first.close()
        await second.close()
    third = await open_store(store_dsn)
    try:
        assert await third.table(PODS).rows(CLUSTER) == [expected(active("p1", 5))]
        assert await _versions(third) == [step.version for step in MIGRATIONS]
    finally:
        await third.close()


async def _versions(store) -> list[int]:
    """The rows of schema_version, read through the store's own connection."""
    if hasattr(store, "conn"):
        rows = await store.conn.query("versions", "SELECT version FROM schema_version"
                                      " ORDER BY version", ())
        return [int(v) for (v,) in rows]
    return await store._reader.call(lambda conn: [v for (v,) in conn.execute(
        "SELECT version FROM schema_version ORDER BY version")])


async def test_acquire_many_decides_each_lease_by_the_rule_of_one(store):
    """The batched renewal (`acquire_many`) is the rule of `acquire`, row by row, in one
    call: a free lease is taken, our own renewed, one held at a higher epoch refused, an
    expired one retaken, and the answers come back in the order asked."""
    assert await store.acquire("held-by-b", B2, 30)
    assert await store.acquire("ours", A1, 30)
    assert await store.acquire("expired", B1, 0)
    before = (await store.lease("ours"))["expires_at"]
    held = await store.acquire_many(
        [("ours", A1), ("held-by-b", A1), ("free", A1), ("expired", A1)], 60)
    assert held == [True, False, True, True]
    assert (await store.lease("ours"))["expires_at"] > before
    assert ((await store.lease("held-by-b"))["owner"], (await store.lease("free"))["owner"],
            (await store.lease("expired"))["owner"]) == ("b", "a", "a")
    assert await store.acquire_many([], 30) == []


async def test_a_single_read_or_write_runs_in_autocommit_and_a_transaction_does_not(
        mysql_dsn):
    """`query` and `execute` are one statement each: the session's autocommit makes it a
    transaction of its own (one round trip, not BEGIN, the statement and COMMIT), while
    `transaction` holds its statements in one."""
    store = await open_store(mysql_dsn)
    try:
        assert list(await store.conn.query("t", "SELECT @@in_transaction")) == [(0,)]
        async with store.conn.transaction() as cur:
            await cur.execute("SELECT @@in_transaction")
            assert list(await cur.fetchall()) == [(1,)]
        await store.conn.execute("t", "UPDATE schema_version SET version = version"
                                 " WHERE version < 0")
    finally:
        await store.close()
