"""The cluster reconciler against the in-memory source and reference store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reconciler import (
    ClusterId,
    ClusterReconciler,
    Fence,
    Fenced,
    ReconcilerSettings,
    State,
)
from reconciler.testing import MemorySource, MemoryStore

C = ClusterId("c1")
FAST = ReconcilerSettings(senders=3, batch_size=7, linger=0, backoff_initial=0.001,
                          backoff_max=0.01, full_sync_interval=3600, lease_ttl=30)


def assert_converged(source: MemorySource, store: MemoryStore) -> None:
    truth = source.truth()
    active = store.active(C)
    assert {k: (r.version, r.checksum) for k, r in active.items()} == {
        k: (r.version, r.checksum) for k, r in truth.items()
    }


@pytest.fixture
async def running() -> AsyncIterator[tuple[MemorySource, MemoryStore, ClusterReconciler]]:
    source, store = MemorySource(page_size=5), MemoryStore()
    for i in range(20):
        await source.put(f"p{i}", {"n": i})
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    yield source, store, rec
    rec.stop()
    await task


async def test_initial_full_sync_then_watch_events(running) -> None:
    source, store, rec = running
    assert_converged(source, store)
    await source.put("p1", {"n": "changed"})
    await source.put("new", {"n": "new"})
    v = await source.delete("p2")
    await rec.caught_up(v)
    assert_converged(source, store)
    assert store.rows[(C, "p2")].state is State.DELETED
    assert source.lists == 1


async def test_cut_stream_resumes_from_last_version_without_relist(running) -> None:
    source, store, rec = running
    await source.put("p3", {"n": "x"})
    await source.cut()
    v = await source.put("p4", {"n": "y"})
    await rec.caught_up(v)
    assert_converged(source, store)
    assert source.lists == 1 and source.watches >= 2


async def test_expired_watch_relists_and_tombstones_deletes_made_in_the_gap(running) -> None:
    source, store, rec = running
    v0 = await source.put("p0", {"n": "seen"})
    await rec.caught_up(v0)
    generation = rec.status.full_syncs
    # the stream drops; meanwhile changes happen and history is compacted away
    source.compact()
    await source.cut()
    await source.delete("p5")
    await source.put("p6", {"n": "gap"})
    source.compact()
    await rec.wait_synced(generation)
    v = await source.put("after", {"n": 1})
    await rec.caught_up(v)
    assert_converged(source, store)
    assert store.rows[(C, "p5")].state is State.DELETED
    assert source.lists == 2


async def test_partial_list_deletes_nothing_and_is_retried() -> None:
    source, store = MemorySource(page_size=5), MemoryStore()
    for i in range(20):
        await source.put(f"p{i}", {"n": i})
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    await source.delete("p19")
    source.fail_list_after_pages = 1  # the next list dies on its second page
    rec.request_full_sync()
    await rec.wait_synced(1)
    assert source.lists == 3  # failed once, retried from scratch
    v = await source.put("x", {"n": 0})
    await rec.caught_up(v)
    assert_converged(source, store)
    rec.stop()
    await task


async def test_transient_store_failures_are_retried() -> None:
    source, store = MemorySource(), MemoryStore()
    for i in range(10):
        await source.put(f"p{i}", {"n": i})
    store.fail_next = 3
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    assert_converged(source, store)
    rec.stop()
    await task


async def test_events_during_full_sync_are_not_overtaken_by_older_list_data() -> None:
    """A periodic full sync lists while events keep coming; events newer than the list win."""
    source, store = MemorySource(page_size=2), MemoryStore()
    for i in range(30):
        await source.put(f"p{i}", {"n": i})
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()

    async def writer() -> int:
        v = 0
        for round_ in range(5):
            for i in range(30):
                v = await source.put(f"p{i}", {"n": i, "round": round_})
                await asyncio.sleep(0)
        return v

    w = asyncio.create_task(writer())
    for _ in range(3):
        rec.request_full_sync()
        await rec.wait_synced(rec.status.full_syncs)
    v = await w
    await rec.caught_up(v)
    assert_converged(source, store)
    for key, version in _versions_by_key(store).items():
        assert version == sorted(version), f"stored version of {key} went backwards"
    rec.stop()
    await task


def _versions_by_key(store: MemoryStore) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, version in store.history:
        out.setdefault(key, []).append(version)
    return out


async def test_gate_overflow_schedules_another_full_sync_and_converges() -> None:
    source, store = MemorySource(page_size=1), MemoryStore()
    for i in range(10):
        await source.put(f"p{i}", {"n": i})
    settings = ReconcilerSettings(senders=2, batch_size=3, linger=0, gate_capacity=2,
                                  backoff_initial=0.001, backoff_max=0.01,
                                  full_sync_interval=3600)
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=settings)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    burst = asyncio.create_task(_burst(source))
    rec.request_full_sync()
    v = await burst
    await rec.wait_synced(2)
    await rec.caught_up(v)
    assert_converged(source, store)
    rec.stop()
    await task


async def _burst(source: MemorySource) -> int:
    v = 0
    for i in range(50):
        v = await source.put(f"b{i}", {"n": i})
        await asyncio.sleep(0)
    return v


async def test_lost_lease_ends_the_run_with_fenced() -> None:
    source, store = MemorySource(), MemoryStore()
    await source.put("p", {"n": 1})
    mine = Fence(owner="a", epoch=1)
    settings = ReconcilerSettings(linger=0, lease_ttl=0.03, backoff_initial=0.001,
                                  backoff_max=0.01)
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=settings,
                            leases=store, fence=mine)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    assert await store.acquire(C, Fence(owner="b", epoch=2), ttl=60)
    with pytest.raises(Fenced):
        await task
    assert rec.status.phase == "fenced"


async def test_graceful_stop_flushes_queued_records_and_releases_the_lease() -> None:
    source, store = MemorySource(), MemoryStore()
    for i in range(50):
        await source.put(f"p{i}", {"n": i})
    settings = ReconcilerSettings(linger=0.05, batch_size=1000, backoff_initial=0.001)
    fence = Fence(owner="a")
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=settings,
                            leases=store, fence=fence)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    for i in range(50):
        v = await source.put(f"p{i}", {"n": -i})
    await rec.received(v)
    assert rec.queued > 0  # still lingering in the senders
    rec.stop()
    await task
    assert_converged(source, store)
    assert C not in store.leases
    assert rec.status.phase == "stopped"
