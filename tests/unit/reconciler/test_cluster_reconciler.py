"""The cluster reconciler against the in-memory source and reference store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from reconciler import (
    Checksum,
    ClusterId,
    ClusterReconciler,
    ClusterSupervisor,
    Fence,
    Fenced,
    ObjectKey,
    ReconcilerSettings,
    Record,
    State,
)
from reconciler.testing import MemorySource, MemoryStore

C = ClusterId("c1")
FAST = ReconcilerSettings(senders=3, batch_size=7, linger=0, backoff_initial=0.001,
                          backoff_max=0.01, full_sync_interval=3600, lease_ttl=30)


def assert_converged(source: MemorySource, store: MemoryStore) -> None:
    """Active rows = live objects, with their content; a row's version may trail its
    object's when only an unchanged-content version came later (it is not written)."""
    truth = source.truth()
    active = store.active(C)
    assert {k: r.checksum for k, r in active.items()} == {
        k: r.checksum for k, r in truth.items()}
    assert all(active[k].version <= truth[k].version for k in truth)


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


async def test_a_resync_skips_unchanged_objects_but_not_edited_rows_or_news(running) -> None:
    source, store, rec = running
    # The first full sync of a run vouches for nothing: rows at an equal version may
    # come from an older release or another business id.
    assert source.vouched == 0
    v = await source.put("p1", {"n": "changed"})
    await rec.caught_up(v)
    # A row edited behind our back: the store reports its checksum empty.
    edited = (C, ObjectKey("p2"))
    store.rows[edited] = replace(store.rows[edited], checksum=Checksum(""),
                                 fields={"n": "edited"})
    # A row behind its object (a write lost, say): another version, so projected again.
    behind = (C, ObjectKey("p3"))
    store.rows[behind] = replace(store.rows[behind], version=0, fields={"n": "old"},
                                 checksum=Checksum("old"))
    generation = rec.status.full_syncs
    rec.request_full_sync("test")
    await rec.wait_synced(generation)
    # Every other listed object is vouched for (p1 too: this run wrote it at its version).
    assert source.vouched == 20 - 2
    assert store.rows[edited].fields == {"n": 2}
    assert store.rows[behind].fields == {"n": 3}
    assert_converged(source, store)


async def test_versions_going_backwards_reset_the_rows_and_rewrite_them(running) -> None:
    source, store, rec = running
    await source.put("p1", {"n": "changed"})
    v = await source.delete("p5")  # a tombstone at a high version
    await rec.caught_up(v)
    stale = store.rows[(C, ObjectKey("p5"))]
    assert stale.deleted and stale.version == v
    generation = rec.status.full_syncs
    # The cluster's etcd is restored from a backup taken before p5 was deleted: the
    # versions restart low, below every stored one, and the watch is cut.
    await source.restart_versions(start=1)
    await source.put("p5", {"n": 5})
    await rec.wait_synced(generation)
    assert store.resets == 1 and rec.status.version_resets == 1
    v = await source.put("after", {"n": "new"})
    await rec.caught_up(v)
    # Every live object's row is at its new version (nothing refused as stale), the
    # restored object is alive again, and a new change applies.
    truth = source.truth()
    active = store.active(C)
    assert {k: (r.version, r.checksum) for k, r in active.items()} == {
        k: (r.version, r.checksum) for k, r in truth.items()}
    assert not store.rows[(C, ObjectKey("p5"))].deleted


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


async def test_lost_lease_ends_every_kind_with_fenced() -> None:
    pods, nodes, store = MemorySource(), MemorySource(), MemoryStore()
    await pods.put("p", {"n": 1})
    await nodes.put("n", {"n": 1})
    mine = Fence(owner="a", epoch=1)
    settings = ReconcilerSettings(linger=0, lease_ttl=0.03, backoff_initial=0.001,
                                  backoff_max=0.01)
    recs = [ClusterReconciler(cluster=C, kind=k, source=s, store=store, settings=settings,
                              fence=mine) for k, s in (("pods", pods), ("nodes", nodes))]
    sup = ClusterSupervisor(cluster=C, reconcilers=recs, leases=store, fence=mine,
                            settings=settings)
    task = asyncio.create_task(sup.run())
    await sup.wait_synced()
    assert await store.acquire(C, Fence(owner="b", epoch=2), ttl=60)
    with pytest.raises(Fenced):
        await task
    assert sup.status.phase == "fenced"
    assert all(r.status.phase in ("fenced", "stopped") for r in recs)


async def test_stopping_one_kind_never_fences_its_sibling() -> None:
    """The lease belongs to the cluster: one kind's reconciler ending releases nothing."""
    pods, nodes, store = MemorySource(), MemorySource(), MemoryStore()
    await pods.put("p", {"n": 1})
    mine = Fence(owner="a", epoch=1)
    recs = [ClusterReconciler(cluster=C, kind=k, source=s, store=store, settings=FAST,
                              fence=mine) for k, s in (("pods", pods), ("nodes", nodes))]
    sup = ClusterSupervisor(cluster=C, reconcilers=recs, leases=store, fence=mine,
                            settings=FAST)
    task = asyncio.create_task(sup.run())
    await sup.wait_synced()
    recs[0].stop()  # one kind stops on its own
    v = await nodes.put("n", {"n": 2})
    await recs[1].caught_up(v)
    assert store.holder(C) == mine
    assert store.rows[(C, "n")].version == v
    sup.stop()
    await task


async def test_graceful_stop_flushes_queued_records_and_expires_the_lease() -> None:
    source, store = MemorySource(), MemoryStore()
    for i in range(50):
        await source.put(f"p{i}", {"n": i})
    settings = ReconcilerSettings(linger=0.05, batch_size=1000, backoff_initial=0.001)
    fence = Fence(owner="a", epoch=7)
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=settings,
                            fence=fence)
    sup = ClusterSupervisor(cluster=C, reconcilers=[rec], leases=store, fence=fence,
                            settings=settings)
    task = asyncio.create_task(sup.run())
    await sup.wait_synced()
    for i in range(50):
        v = await source.put(f"p{i}", {"n": -i})
    await rec.received(v)
    assert rec.queued > 0  # still lingering in the senders
    sup.stop()
    await task
    assert_converged(source, store)
    assert store.holder(C) is None  # given up: a successor need not wait
    assert store.leases[C][0].epoch == 7  # but the row keeps its epoch
    assert not await store.acquire(C, Fence(owner="old", epoch=3), ttl=60)
    assert await store.acquire(C, Fence(owner="new", epoch=9), ttl=60)
    assert rec.status.phase == "stopped"


class FencingStore(MemoryStore):
    """Writes wait until `release` is set, then every write is answered with `Fenced`."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def apply(self, cluster, batch, *, fence=None):  # type: ignore[no-untyped-def]
        await self.release.wait()
        raise Fenced("taken over")


async def test_fenced_during_a_busy_full_sync_ends_promptly_instead_of_freezing() -> None:
    """Defect: a fenced sender left the full sync and the gate's replay waiting forever on
    a full shard whose sender was gone, so neither stop() nor cancellation could land."""
    source, store = MemorySource(), FencingStore()
    source.version = 10
    for i in range(100):  # rows whose objects are gone: the full sync tombstones them
        store.rows[(C, ObjectKey(f"gone{i}"))] = Record(
            key=ObjectKey(f"gone{i}"), version=1, checksum=Checksum("x"),
            query_at=datetime.now(UTC))
    settings = ReconcilerSettings(senders=1, batch_size=5, linger=0, shard_capacity=5,
                                  backoff_initial=0.001, backoff_max=0.01)
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=settings)
    task = asyncio.create_task(rec.run())
    await source.wait_watches(1)  # the list is done; its tombstones fill the shard
    for i in range(20):
        await source.put(f"late{i}", {"n": i})  # parked by the closed gate
    await source.wait_delivered()
    assert rec.parked == 20
    store.release.set()  # now the sender learns it was fenced
    async with asyncio.timeout(10):
        with pytest.raises(Fenced):
            await task
    assert rec.status.phase == "fenced"


class HeldStore(MemoryStore):
    """Every write waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def apply(self, cluster, batch, *, fence=None):  # type: ignore[no-untyped-def]
        await self.release.wait()
        return await super().apply(cluster, batch, fence=fence)


async def test_the_watch_opens_when_the_list_ends_not_when_its_writes_do() -> None:
    source, store = MemorySource(page_size=10), HeldStore()
    for i in range(30):
        await source.put(f"p{i}", {"n": i})
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    async with asyncio.timeout(10):
        await source.wait_watches(1)  # while not one row has been written
    assert store.applied_batches == 0
    v = await source.put("during", {"n": 1})
    store.release.set()
    await rec.wait_synced()
    await rec.caught_up(v)
    assert_converged(source, store)
    assert source.lists == 1
    rec.stop()
    await task


async def test_a_full_sync_slot_is_given_back_when_the_list_ends_not_when_its_writes_do(
) -> None:
    """One slot, two clusters: the second lists while the first's rows wait to be
    committed (a fleet's first syncs overlap their lists with each other's commits)."""
    slots = asyncio.Semaphore(1)
    store = HeldStore()
    sources = [MemorySource(page_size=10) for _ in range(2)]
    for source in sources:
        for i in range(15):
            await source.put(f"p{i}", {"n": i})
    recs = [ClusterReconciler(cluster=ClusterId(f"c{n}"), source=source, store=store,
                              settings=FAST, full_sync_slots=slots)
            for n, source in enumerate(sources)]
    tasks = [asyncio.create_task(rec.run()) for rec in recs]
    async with asyncio.timeout(10):
        for source in sources:
            await source.wait_watches(1)  # both listed, while not one row is written
    assert store.applied_batches == 0
    store.release.set()
    for rec in recs:
        await rec.wait_synced()
    assert not slots.locked()
    for rec in recs:
        rec.stop()
    await asyncio.gather(*tasks)


async def test_one_410_costs_exactly_one_relist_even_during_a_full_sync() -> None:
    source, store = MemorySource(page_size=10), HeldStore()
    store.release.set()
    for i in range(30):
        await source.put(f"p{i}", {"n": i})
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    store.release.clear()  # the next full sync will hang in its writes
    rec.request_full_sync("periodic")
    await source.wait_watches(1)
    lists = source.lists
    await source.put("x", {"n": 1})
    source.compact()
    await source.cut()  # the watch reconnects from a compacted version: 410
    store.release.set()
    await rec.wait_synced(2)
    v = await source.put("y", {"n": 2})
    await rec.caught_up(v)
    assert_converged(source, store)
    # the full sync under way when the 410 came may not count; exactly one more list does
    assert source.lists <= lists + 2
    rec.stop()
    await task
