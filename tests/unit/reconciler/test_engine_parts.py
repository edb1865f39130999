"""Unit tests of the engine's parts: shards, gate, diff, merge rule, backoff."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler import (
    TOMBSTONE,
    ClusterId,
    Fenced,
    NullMetrics,
    ObjectKey,
    QueueClosed,
    Record,
    State,
    StoredIndex,
    Transient,
    checksum,
)
from reconciler._backoff import Backoff
from reconciler._diff import changes, tombstones
from reconciler._gate import Gate
from reconciler._writer import Scope, Writer, WriterSettings
from reconciler.testing import MemoryStore, merge

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rec(key: str, version: int, content: str = "a", *, deleted: bool = False) -> Record:
    return Record(
        key=ObjectKey(key), version=version, query_at=NOW,
        checksum=TOMBSTONE if deleted else checksum({"c": content}),
        state=State.DELETED if deleted else State.ACTIVE, fields={"c": content},
    )


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
    same = checksum({"c": "a"})
    index = StoredIndex.of_rows([("same", 5, same), ("changed", 5, same), ("bumped", 5, same),
                                 ("gone", 5, same), ("edited", 5, ""), ("gone2", 3, same)])
    listed = [rec("same", 5), rec("changed", 8, "b"), rec("bumped", 9), rec("new", 4),
              rec("edited", 5)]
    seen: set[ObjectKey] = set()
    out = list(changes(listed, index, seen))
    # "bumped": same content, no write; "edited": its row no longer matches its checksum
    assert [r.key for r in out] == ["changed", "new", "edited"]
    assert all(r.repair for r in out)
    dead = list(tombstones(index, seen, version=20, now=NOW))
    assert [(r.key, r.version, r.checksum, r.state) for r in dead] == [
        ("gone", 20, TOMBSTONE, State.DELETED), ("gone2", 20, TOMBSTONE, State.DELETED)]


def test_a_stored_index_vouches_only_for_intact_rows_and_knows_its_newest() -> None:
    index = StoredIndex.of_rows(iter([("a", 5, "x"), ("b", 9, ""), ("c", 7, "y")]))
    assert index.versions == {"a": 5, "b": 9, "c": 7} and index.newest == 9
    assert index.intact == {"a": 5, "c": 7}  # "b" was edited out of band
    assert len(index) == 3 and index.keys == ["a", "b", "c"] and index.checksums["b"] == ""
    assert StoredIndex.of_rows([]).newest == 0


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


def test_backoffs_without_a_generator_share_one() -> None:
    """A generator holds 2.5 KiB of state; an instance makes about 26 backoffs per
    cluster, so they draw from one."""
    import gc
    import random

    before = sum(isinstance(o, random.Random) for o in gc.get_objects())
    backoffs = [Backoff(0.1, 1.0) for _ in range(100)]
    assert sum(isinstance(o, random.Random) for o in gc.get_objects()) == before
    assert len({b.next() for b in backoffs}) > 1  # still jittered


def test_diff_marks_its_records_repair_and_catches_state_tampering() -> None:
    # a row set to Deleted out of band is not in the index (Active rows only)
    index = StoredIndex.of_rows([("other", 5, checksum({"c": "a"}))])
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


class GroupStore(MemoryStore):
    """A MemoryStore that writes many scopes' groups in one call (and can fence one)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[tuple[str, int]]] = []
        self.fenced: set[str] = set()
        self.locked: set[str] = set()
        """Clusters whose rows another session holds: any transaction touching them
        fails as a whole (a lock-wait timeout)."""

    async def apply(self, cluster, batch, *, fence=None):  # type: ignore[no-untyped-def]
        if cluster in self.locked:
            raise Transient(f"cluster {cluster}: lock wait timeout exceeded")
        return await super().apply(cluster, batch, fence=fence)

    async def apply_groups(self, groups):  # type: ignore[no-untyped-def]
        self.calls.append([(g.cluster, len(g.records)) for g in groups])
        if any(g.cluster in self.locked for g in groups):
            raise Transient("lock wait timeout exceeded")
        out = []
        for g in groups:
            if g.cluster in self.fenced:
                out.append(Fenced(f"cluster {g.cluster}: taken over"))
            else:
                out.append(await MemoryStore.apply(self, g.cluster, g.records))
        return out


def writer_for(store: MemoryStore, **settings: Any) -> Writer:
    options = {"senders": 1, "linger": 0.01} | settings
    return Writer(metrics=NullMetrics(), settings=WriterSettings(**options),
                  multi=store if isinstance(store, GroupStore) else None)


def scope_of(writer: Writer, store: MemoryStore, cluster: str) -> Scope:
    return writer.scope(cluster=ClusterId(cluster), store=store, fence=None,
                        labels={"cluster": cluster, "kind": "k"}, clock=lambda: NOW)


async def test_row15_an_older_version_cannot_overtake_a_newer_one_of_the_same_content() -> None:
    """TEST-MATRIX row 15 (v5 A, v9 A, v7 B): the store writes nothing for v9 (same content
    as v5), so it is the writer that must not let v7 through afterwards."""
    store = MemoryStore()
    writer = writer_for(store, linger=0)
    task = asyncio.create_task(writer.run())
    scope = scope_of(writer, store, "c")
    for record in (rec("k", 5, "A"), rec("k", 9, "A"), rec("k", 7, "B")):
        await scope.put(record)
        await scope.drained()
    assert scope.superseded == 1
    assert store.rows[(ClusterId("c"), ObjectKey("k"))].checksum == rec("k", 5, "A").checksum
    await scope.put(rec("k", 11, "C"))  # anything newer still goes through
    await scope.drained()
    assert store.rows[(ClusterId("c"), ObjectKey("k"))].version == 11
    task.cancel()


async def test_a_waiting_key_coalesces_to_its_newest_version() -> None:
    store = MemoryStore()
    writer = writer_for(store)
    scope = scope_of(writer, store, "c")
    for record in (rec("a", 1), rec("b", 2), rec("a", 5, "x")):
        await scope.put(record)
    assert writer.queued == 2  # not started: both keys wait, "a" once
    task = asyncio.create_task(writer.run())
    await scope.drained()
    assert store.history == [("a", 5), ("b", 2)]
    task.cancel()


async def test_linger_is_a_bound_a_full_batch_is_written_at_once() -> None:
    """A sender lingers for a fuller batch, but no longer than it takes to fill: with an
    hour of linger, a batch that fills is written now, and what is left waits."""
    store = GroupStore()
    writer = writer_for(store, linger=3600, batch_size=4)
    task = asyncio.create_task(writer.run())
    scope = scope_of(writer, store, "c")
    await scope.put(rec("a", 1))
    await asyncio.sleep(0)  # the sender starts lingering on one record
    for key in ("b", "c", "d", "e"):
        await scope.put(rec(key, 1))
    while len(store.history) < 4:
        await asyncio.sleep(0.001)
    assert sorted(k for k, _ in store.history) == ["a", "b", "c", "d"]
    assert writer.queued == 1  # "e" lingers for company
    task.cancel()


async def test_one_transaction_carries_many_clusters_and_a_fenced_one_stays_alone() -> None:
    store = GroupStore()
    store.fenced.add("x")
    writer = writer_for(store, linger=0.05)
    scopes = {c: scope_of(writer, store, c) for c in ("x", "y", "z")}
    for c, scope in scopes.items():
        await scope.put(rec(f"{c}-1", 1))
    task = asyncio.create_task(writer.run())
    await scopes["y"].drained()
    await scopes["z"].drained()
    assert [sorted(call) for call in store.calls] == [[("x", 1), ("y", 1), ("z", 1)]]
    assert isinstance(await scopes["x"].fenced, Fenced)
    with pytest.raises(QueueClosed):
        await scopes["x"].put(rec("x-2", 2))
    assert {k for (_, k) in store.rows} == {"y-1", "z-1"}
    task.cancel()


async def test_a_transaction_carries_at_most_max_scopes_groups() -> None:
    """The cap bounds one transaction's round trips (a statement or two per group), so a
    fleet's backlog is written in many short transactions, not one long one."""
    store = GroupStore()
    writer = writer_for(store, linger=0.05, max_scopes=2)
    scopes = [scope_of(writer, store, c) for c in ("x", "y", "z")]
    for scope in scopes:
        for i in range(2):
            await scope.put(rec(f"{scope.cluster}-{i}", 1))
    task = asyncio.create_task(writer.run())
    for scope in scopes:
        await scope.drained()
    # the first transaction takes two scopes; z, alone, goes by the single-scope path
    assert [sorted(call) for call in store.calls] == [[("x", 2), ("y", 2)]]
    assert {k for (c, k) in store.rows if c == "z"} == {"z-0", "z-1"}
    task.cancel()


def keys_by_shard(writer: Writer, scope: Scope, n: int, *, per: int) -> dict[int, list[str]]:
    """`per` keys of `scope` for each of `n` shards (found by trying names: the shard of a
    key is its hash)."""
    out: dict[int, list[str]] = {}
    shards = writer._shards
    for i in range(10_000):
        key = f"{scope.cluster}-{i}"
        at = shards.index(writer._shard_of(scope, ObjectKey(key)))
        if at < n and len(out.setdefault(at, [])) < per:
            out[at].append(key)
        if len(out) == n and all(len(v) == per for v in out.values()):
            return out
    raise AssertionError("no such keys")


async def test_a_quiet_fleets_records_in_every_shard_go_in_one_transaction() -> None:
    """Design 009, addendum 2: one sender collects a batch over every shard that is not
    busy. With a shard per sender lingering on its own, eight shards wrote eight
    transactions of a few records each."""
    store = GroupStore()
    writer = writer_for(store, senders=4, linger=0.01)
    scopes = [scope_of(writer, store, c) for c in ("w", "x", "y", "z")]
    for n, scope in enumerate(scopes):  # each scope's record in a shard of its own
        (key,) = keys_by_shard(writer, scope, n + 1, per=1)[n]
        await scope.put(rec(key, 1))
    assert sum(1 for shard in writer._shards if shard.pending) == 4
    task = asyncio.create_task(writer.run())
    for scope in scopes:
        await scope.drained()
    assert [sorted(c for c, _ in call) for call in store.calls] == [["w", "x", "y", "z"]]
    task.cancel()


async def test_a_backlog_spreads_over_the_senders() -> None:
    """A shard holding a batch's worth alone is a batch alone, and the next sender takes
    the next shard while the first batch is still being written."""
    entered: list[list[tuple[str, int]]] = []
    both_in, release = asyncio.Event(), asyncio.Event()

    class HeldStore(GroupStore):
        async def apply(self, cluster, batch, *, fence=None):  # type: ignore[no-untyped-def]
            entered.append([(cluster, len(batch))])
            if len(entered) == 2:
                both_in.set()
            await release.wait()
            return await super().apply(cluster, batch, fence=fence)

    store = HeldStore()
    writer = writer_for(store, senders=2, batch_size=3, linger=3600)
    scope = scope_of(writer, store, "c")
    for keys in keys_by_shard(writer, scope, 2, per=3).values():
        for key in keys:
            await scope.put(rec(key, 1))
    task = asyncio.create_task(writer.run())
    async with asyncio.timeout(10):  # one batch at a time would never get here
        await both_in.wait()
    assert entered == [[("c", 3)], [("c", 3)]]
    release.set()
    await scope.drained()
    assert len(store.rows) == 6
    task.cancel()


async def test_a_batch_cut_by_a_cap_leaves_nobody_lingering() -> None:
    """What a cap left behind is written at once, however long the linger: it did not
    wait for company, it was turned away."""
    store = GroupStore()
    writer = writer_for(store, linger=3600, batch_size=5, max_scopes=2)
    scopes = [scope_of(writer, store, c) for c in ("x", "y", "z")]
    for scope in scopes:
        for i in range(2):
            await scope.put(rec(f"{scope.cluster}-{i}", 1))
    task = asyncio.create_task(writer.run())
    async with asyncio.timeout(10):  # an hour, were it lingering
        for scope in scopes:
            await scope.drained()
    assert [sorted(call) for call in store.calls] == [[("x", 2), ("y", 2)]]
    assert {k for (c, k) in store.rows if c == "z"} == {"z-0", "z-1"}
    task.cancel()


async def test_one_clusters_failing_writes_never_hold_back_the_others() -> None:
    """TEST-MATRIX row 27 at the writer: X's rows are locked elsewhere, so every
    transaction touching them fails. The batch that carried X with Y and Z is tried again
    scope by scope, X is set aside with its own backoff (its newest versions kept), and Y
    and Z keep being written, also later, by the same single sender."""
    store = GroupStore()
    store.locked.add("x")
    writer = writer_for(store, linger=0.05, backoff_initial=0.01, backoff_max=0.02)
    scopes = {c: scope_of(writer, store, c) for c in ("x", "y", "z")}
    for c, scope in scopes.items():
        await scope.put(rec(f"{c}-1", 1))
    task = asyncio.create_task(writer.run())
    await scopes["y"].drained()
    await scopes["z"].drained()
    x = scopes["x"]
    assert x.retry_at is not None and x.queued == 1 and not x.closed
    for version in (2, 3):  # later news of X waits with it, newest version only
        await x.put(rec("x-1", version, f"v{version}"))
        await scopes["y"].put(rec("y-2", version))
        await scopes["y"].drained()
    assert x.queued == 1 and x.failing is not None
    store.locked.clear()
    await x.drained()
    assert store.rows[(ClusterId("x"), ObjectKey("x-1"))].version == 3
    assert x.failing is None and x.retry_at is None
    assert {k for (_, k) in store.rows} == {"x-1", "y-1", "y-2", "z-1"}
    task.cancel()


async def test_a_hot_scope_waits_at_its_share_while_others_still_get_in() -> None:
    store = MemoryStore()
    writer = writer_for(store, budget=4)
    hot, quiet = scope_of(writer, store, "hot"), scope_of(writer, store, "quiet")
    for i in range(4):  # the whole budget
        await hot.put(rec(f"h{i}", 1))
    blocked = asyncio.create_task(hot.put(rec("h-more", 1)))
    await asyncio.sleep(0)
    assert not blocked.done()  # over budget and over its share (4 // 2)
    await quiet.put(rec("q0", 1))  # under its share: gets in though the budget is full
    assert writer.queued == 5 and hot.used == 4 and quiet.used == 1
    task = asyncio.create_task(writer.run())
    await blocked  # the senders made room
    await hot.drained()
    await quiet.drained()
    assert len(store.rows) == 6
    task.cancel()


class GaugeMetrics(NullMetrics):
    """NullMetrics that keep the last value each gauge was set to, bound or not."""

    def __init__(self) -> None:
        self.gauges: dict[tuple[str, str], float] = {}

    def set(self, name: str, labels: object, value: float) -> None:
        self.gauges[(name, labels["cluster"])] = value  # type: ignore[index]

    def child(self, name: str, labels: object) -> NullMetrics.Child:
        metrics = self

        class Child(NullMetrics.Child):
            def set(self, value: float) -> None:
                metrics.set(name, labels, value)
        return Child()


async def test_lag_reads_zero_after_a_batch_that_was_in_flight_at_the_last_tick() -> None:
    """The lag gauge keeps the last batch's lag until a tick finds the scope idle. A batch
    in flight at one tick and delivered before the next changes no queue figure, so the
    reset must not hang on a change of those (CI once saw a lag stuck after a catch-up)."""
    release = asyncio.Event()
    entered = asyncio.Event()

    class HeldStore(MemoryStore):
        async def apply(self, cluster, batch, *, fence=None):  # type: ignore[no-untyped-def]
            entered.set()
            await release.wait()
            return await super().apply(cluster, batch, fence=fence)

    store, metrics = HeldStore(), GaugeMetrics()
    writer = Writer(metrics=metrics, settings=WriterSettings(senders=1, linger=0))
    scope = writer.scope(cluster=ClusterId("c"), store=store, fence=None,
                         labels={"cluster": "c", "kind": "k"},
                         clock=lambda: NOW + timedelta(seconds=2))
    task = asyncio.create_task(writer.run())
    await scope.put(rec("a", 1))
    await entered.wait()
    writer.show_gauges()  # queued 0, parked 0, one record in flight: no reset
    assert metrics.gauges[("sender_queue_depth", "c")] == 0
    release.set()
    await scope.drained()
    assert metrics.gauges[("lag_seconds", "c")] == 2
    writer.show_gauges()
    assert metrics.gauges[("lag_seconds", "c")] == 0
    task.cancel()


async def test_a_tick_looks_only_at_scopes_not_at_rest() -> None:
    """The gauge tick sets nothing for scopes at rest (a fleet's thousands of them), and
    still sees the one that changed, until it is at rest again."""
    class Counted(GaugeMetrics):
        def __init__(self) -> None:
            super().__init__()
            self.sets: list[tuple[str, str]] = []

        def set(self, name: str, labels: object, value: float) -> None:
            self.sets.append((name, labels["cluster"]))  # type: ignore[index]
            super().set(name, labels, value)

    store, metrics = MemoryStore(), Counted()
    writer = Writer(metrics=metrics, settings=WriterSettings(senders=1, linger=0))
    scopes = [writer.scope(cluster=ClusterId(c), store=store, fence=None,
                           labels={"cluster": c, "kind": "k"}, clock=lambda: NOW)
              for c in ("a", "b", "c")]
    writer.show_gauges()  # every new scope's gauges are shown once
    assert sorted(metrics.sets) == sorted(
        (g, c) for g in ("parked_events", "sender_queue_depth") for c in "abc")
    metrics.sets.clear()
    writer.show_gauges()
    assert metrics.sets == []  # all at rest
    await scopes[1].put(rec("x", 1))
    writer.show_gauges()
    assert sorted(metrics.sets) == [("parked_events", "b"), ("sender_queue_depth", "b")]
    assert metrics.gauges[("sender_queue_depth", "b")] == 1
    task = asyncio.create_task(writer.run())
    await scopes[1].drained()
    metrics.sets.clear()
    writer.show_gauges()  # written: the depth and the lag go back to 0
    assert sorted(metrics.sets) == [("lag_seconds", "b"), ("parked_events", "b"),
                                    ("sender_queue_depth", "b")]
    metrics.sets.clear()
    writer.show_gauges()
    assert metrics.sets == []
    task.cancel()


def test_rate_meter_averages_the_last_whole_seconds() -> None:
    from reconciler._status import RateMeter

    meter = RateMeter(window=5)
    for second, n in ((100, 7), (101, 3), (104, 5), (105, 100)):
        meter.add(second + 0.5, n)
    assert meter.rate(105.2) == (7 + 3 + 5) / 5  # seconds 100-104; 105 is not complete
    assert meter.rate(106.0) == (3 + 5 + 100) / 5  # 101-105
    assert meter.rate(200.0) == 0.0
