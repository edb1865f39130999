"""Unit tests of the engine's parts: shards, gate, diff, merge rule, backoff."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

from reconciler import TOMBSTONE, ClusterId, NullMetrics, ObjectKey, Record, Stamp, State, checksum
from reconciler._backoff import Backoff
from reconciler._diff import changes, tombstones
from reconciler._gate import Gate
from reconciler._shards import ShardQueue, shard_of
from reconciler.testing import merge

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rec(key: str, version: int, content: str = "a", *, deleted: bool = False) -> Record:
    return Record(
        key=ObjectKey(key), version=version, query_at=NOW,
        checksum=TOMBSTONE if deleted else checksum({"c": content}),
        state=State.DELETED if deleted else State.ACTIVE, fields={"c": content},
    )


def test_shard_of_is_stable_across_processes() -> None:
    keys = [f"uid-{i}" for i in range(50)]
    here = [shard_of(ObjectKey(k), 8) for k in keys]
    code = (
        "from reconciler._shards import shard_of;"
        f"print([shard_of(k, 8) for k in {keys!r}])"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123"}).stdout.strip()
    assert str(here) == there
    assert len(set(here)) > 4


async def test_shard_queue_coalesces_to_newest_version() -> None:
    q = ShardQueue(capacity=10)
    await q.put(rec("a", 1))
    await q.put(rec("b", 2))
    await q.put(rec("a", 5, "x"))
    await q.put(rec("a", 3, "y"))  # older than the waiting one: dropped
    batch = q.take(10)
    assert [(r.key, r.version) for r in batch] == [("a", 5), ("b", 2)]
    assert q.coalesced == 2


async def test_shard_queue_applies_back_pressure() -> None:
    q = ShardQueue(capacity=2)
    await q.put(rec("a", 1))
    await q.put(rec("b", 1))
    blocked = asyncio.create_task(q.put(rec("c", 1)))
    await asyncio.sleep(0)
    assert not blocked.done()
    await q.put(rec("a", 2))  # an already-waiting key never blocks
    q.take(1)
    await blocked
    assert len(q) == 2


async def test_gate_parks_then_replays_only_newer_events_in_order() -> None:
    out: list[Record] = []

    async def dispatch(r: Record) -> None:
        out.append(r)

    gate = Gate(capacity=10, dispatch=dispatch)
    await gate.put(rec("a", 1))
    await gate.close()
    for v in (3, 7, 5, 9):
        await gate.put(rec(f"k{v}", v))
    assert gate.parked == 4 and [r.version for r in out] == [1]
    assert await gate.open(5) is False
    assert [r.version for r in out] == [1, 7, 9]
    await gate.put(rec("z", 10))
    assert out[-1].version == 10


async def test_gate_overflow_drops_parked_and_reports_it_once() -> None:
    out: list[Record] = []

    async def dispatch(r: Record) -> None:
        out.append(r)

    gate = Gate(capacity=2, dispatch=dispatch)
    await gate.close()
    for v in range(1, 6):
        await gate.put(rec(f"k{v}", v))
    assert gate.parked == 0
    assert await gate.open(0) is True
    assert out == []
    await gate.close()
    assert await gate.open(0) is False


async def test_disabled_gate_never_parks() -> None:
    out: list[Record] = []

    async def dispatch(r: Record) -> None:
        out.append(r)

    gate = Gate(capacity=1, dispatch=dispatch, enabled=False)
    await gate.close()
    await gate.put(rec("a", 1))
    assert [r.version for r in out] == [1]


def test_diff_emits_new_and_changed_never_a_bare_version_and_tombstones_unlisted() -> None:
    index = {
        ObjectKey("same"): Stamp(5, checksum({"c": "a"}), State.ACTIVE),
        ObjectKey("changed"): Stamp(5, checksum({"c": "a"}), State.ACTIVE),
        ObjectKey("bumped"): Stamp(5, checksum({"c": "a"}), State.ACTIVE),
        ObjectKey("gone"): Stamp(5, checksum({"c": "a"}), State.ACTIVE),
        ObjectKey("dead"): Stamp(6, TOMBSTONE, State.DELETED),
    }
    listed = [rec("same", 5), rec("changed", 8, "b"), rec("bumped", 9), rec("new", 4)]
    seen: set[ObjectKey] = set()
    out = list(changes(listed, index, seen))
    assert [r.key for r in out] == ["changed", "new"]  # "bumped": same content, no write
    dead = list(tombstones(index, seen, version=20, now=NOW))
    assert [(r.key, r.version, r.checksum) for r in dead] == [("gone", 20, TOMBSTONE)]


def test_merge_rule_table() -> None:
    a5, a9 = rec("k", 5, "A"), rec("k", 9, "A")
    assert merge(None, a5) == a5
    assert merge(a5, rec("k", 5, "B")) is None  # not newer
    assert merge(a5, a9) is None  # newer, same content: nothing is written
    assert merge(a5, rec("k", 9, "B")) == rec("k", 9, "B")
    d = merge(a5, rec("k", 8, deleted=True))
    assert d is not None and d.state is State.DELETED and d.fields == a5.fields


def test_backoff_grows_with_jitter_and_honours_floor() -> None:
    import random

    b = Backoff(0.1, 1.0, rng=random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[5:]) > max(delays[:2])
    assert b.next(floor=7.0) == 7.0
    b.reset()
    assert b.next() <= 0.1


def test_diff_marks_its_records_repair_and_catches_state_tampering() -> None:
    index = {ObjectKey("k"): Stamp(5, checksum({"c": "a"}), State.DELETED)}
    out = list(changes([rec("k", 5)], index, set()))
    assert [r.key for r in out] == ["k"] and out[0].repair


def test_repair_records_win_at_an_equal_version_only_when_content_differs() -> None:
    from dataclasses import replace

    stored = rec("k", 5, "tampered")
    listed = replace(rec("k", 5, "truth"), repair=True)
    assert merge(stored, rec("k", 5, "truth")) is None  # a watch event never does
    assert merge(stored, listed) == listed
    assert merge(listed, listed) is None
    dead = replace(stored, state=State.DELETED)
    revived = merge(dead, replace(rec("k", 5, "tampered"), repair=True))
    assert revived is not None and revived.state is State.ACTIVE
    assert merge(stored, replace(rec("k", 4, "truth"), repair=True)) is None


async def test_row15_an_older_version_cannot_overtake_a_newer_one_of_the_same_content() -> None:
    """TEST-MATRIX row 15 (v5 A, v9 A, v7 B): the store writes nothing for v9 (same content
    as v5), so it is the sender pool that must not let v7 through afterwards."""
    from reconciler import ReconcilerSettings
    from reconciler._sender import SenderPool
    from reconciler.testing import MemoryStore

    store = MemoryStore()
    pool = SenderPool(cluster=ClusterId("c"), store=store, fence=None, metrics=NullMetrics(),
                      settings=ReconcilerSettings(linger=0), clock=lambda: NOW)
    task = asyncio.create_task(pool.run())
    for record in (rec("k", 5, "A"), rec("k", 9, "A"), rec("k", 7, "B")):
        await pool.put(record)
        await pool.drained()
    assert pool.superseded == 1
    assert store.rows[(ClusterId("c"), ObjectKey("k"))].checksum == rec("k", 5, "A").checksum
    await pool.put(rec("k", 11, "C"))  # anything newer still goes through
    await pool.drained()
    assert store.rows[(ClusterId("c"), ObjectKey("k"))].version == 11
    task.cancel()
