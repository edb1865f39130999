"""Convergence properties of the engine (TEST-MATRIX "the heart of the suite", rows 14, 33).

1. Random C/U/D histories delivered with loss, duplication and reordering across pods
   (and, with `reorder`, within a pod), then one full sync: the store equals the truth,
   every time. Deliveries pass the sender pool's forward-only guard first (a key's
   version never goes back), as every record the engine writes does: the store writes no
   newer version of unchanged content, so it is that guard which keeps an older change
   from overtaking it (docs/designs/006-no-version-only-writes.md).
2. A stateful machine drives a running reconciler through creates, updates, deletes,
   cut streams, compactions, failing writes and forced full syncs; after every step the
   stored version of a key never decreases and never exceeds the source's; at the end,
   after one more full sync, the store equals the truth — with the gate on and off.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reconciler import ClusterId, ClusterReconciler, ReconcilerSettings, Record
from reconciler.testing import MemorySource, MemoryStore

C = ClusterId("c")
FAST = ReconcilerSettings(senders=3, batch_size=4, linger=0, backoff_initial=0.0005,
                          backoff_max=0.005, full_sync_interval=3600)

op = st.tuples(st.sampled_from("CUD"), st.integers(0, 5), st.integers(0, 3))


async def _history(ops: list[tuple[str, int, int]]) -> MemorySource:
    """A source after `ops`. A pod created again after its deletion gets a new key, as
    Kubernetes gives every created object a new uid: a uid deleted is never live again,
    which is what lets the store skip a later tombstone of an already deleted row (same
    content: no write) without a re-creation overtaking it."""
    source = MemorySource(page_size=3)
    generation: dict[int, int] = {}
    for kind, pod, content in ops:
        key = f"pod-{pod}.{generation.get(pod, 0)}"
        if kind == "D":
            if key in source.objects:
                await source.delete(key)
                generation[pod] = generation.get(pod, 0) + 1
        else:
            await source.put(key, {"content": content, "pod": pod})
    return source


def _deliveries(source: MemorySource, rnd: random.Random, loss: float, dup: float,
                reorder: bool) -> list[Record]:
    """Pods interleaved at random; some lost, some duplicated; with `reorder`, one pod's
    own events are shuffled too (retries, two paths: U before C, D before C...)."""
    per_pod: dict[str, list[Record]] = {}
    for change in source.history:
        if rnd.random() < loss:
            continue
        record = source._record(change)
        copies = 2 if rnd.random() < dup else 1
        per_pod.setdefault(record.key, []).extend([record] * copies)
    if reorder:
        for q in per_pod.values():
            rnd.shuffle(q)
    out: list[Record] = []
    queues = [q for q in per_pod.values() if q]
    while queues:
        q = rnd.choice(queues)
        out.append(q.pop(0))
        queues = [q for q in queues if q]
    return out


def forward_only(records: list[Record]) -> list[Record]:
    """What the sender pool passes on: never a version older than one already taken."""
    taken: dict[str, int] = {}
    out = []
    for r in records:
        if r.version >= taken.get(r.key, 0):
            out.append(r)
            if r.deleted:
                taken.pop(r.key, None)
            else:
                taken[r.key] = r.version
    return out


async def _apply_in_batches(store: MemoryStore, records: list[Record], rnd: random.Random
                            ) -> None:
    records = forward_only(records)
    i = 0
    while i < len(records):
        size = rnd.randint(1, 5)
        batch: dict[str, Record] = {}
        for r in records[i:i + size]:
            if r.key in batch:
                break
            batch[r.key] = r
        await store.apply(C, list(batch.values()))
        i += len(batch)


async def full_sync(source: MemorySource, store: MemoryStore) -> None:
    rec = ClusterReconciler(cluster=C, source=source, store=store, settings=FAST)
    task = asyncio.create_task(rec.run())
    await rec.wait_synced()
    rec.stop()
    await task


def assert_equal_truth(source: MemorySource, store: MemoryStore) -> None:
    assert {k: r.checksum for k, r in store.active(C).items()} == {
        k: r.checksum for k, r in source.truth().items()
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=40), seed=st.integers(0, 2**32),
       loss=st.sampled_from([0.0, 0.2, 0.6]), dup=st.sampled_from([0.0, 0.3]),
       reorder=st.booleans())
def test_lossy_disordered_delivery_then_full_sync_equals_truth(
    ops: list[tuple[str, int, int]], seed: int, loss: float, dup: float, reorder: bool
) -> None:
    async def scenario() -> None:
        rnd = random.Random(seed)
        source = await _history(ops)
        store = MemoryStore()
        await _apply_in_batches(store, _deliveries(source, rnd, loss, dup, reorder), rnd)
        if loss == 0.0:
            # nothing lost: the version rule alone converges, whatever the order
            assert_equal_truth(source, store)
            deleted = {c.key for c in source.history} - set(source.objects)
            assert all(store.rows[(C, k)].deleted for k in deleted)
        seen: dict[str, int] = {}
        for key, version in store.history:
            assert version >= seen.get(key, 0), "a stored version went backwards"
            seen[key] = version
        await full_sync(source, store)
        assert_equal_truth(source, store)

    asyncio.run(scenario())


@dataclass
class _Loop:
    loop: asyncio.AbstractEventLoop

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)


class ReconcilerMachine(RuleBasedStateMachine):
    """A running reconciler under random changes and faults (TEST-MATRIX convergence test)."""

    gate_enabled = True

    def __init__(self) -> None:
        super().__init__()
        self.l = _Loop(asyncio.new_event_loop())
        self.source = MemorySource(page_size=2)
        self.store = MemoryStore()
        settings_ = ReconcilerSettings(
            senders=2, batch_size=3, linger=0, gate_capacity=4, backoff_initial=0.0005,
            backoff_max=0.002, full_sync_interval=3600, gate_enabled=self.gate_enabled,
        )
        self.rec = ClusterReconciler(cluster=C, source=self.source, store=self.store,
                                     settings=settings_)
        self.task = self.l.loop.create_task(self.rec.run())
        self.l.run(self.rec.wait_synced())

    def _settle(self) -> None:
        self.l.run(asyncio.sleep(0.001))  # let the reconciler make some progress

    @rule(pod=st.integers(0, 6), content=st.integers(0, 3))
    def put(self, pod: int, content: int) -> None:
        self.l.run(self.source.put(f"pod-{pod}", {"c": content}))
        self._settle()

    @precondition(lambda self: bool(self.source.objects))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.source.objects)))
        self.l.run(self.source.delete(key))
        self._settle()

    @rule()
    def cut_watch(self) -> None:
        self.l.run(self.source.cut())

    @rule()
    def compact(self) -> None:
        self.source.compact()

    @rule(n=st.integers(1, 3))
    def fail_next_writes(self, n: int) -> None:
        self.store.fail_next = n

    @rule()
    def full_sync(self) -> None:
        self.rec.request_full_sync("test")
        self._settle()

    @invariant()
    def stored_versions_never_decrease_nor_exceed_the_source(self) -> None:
        latest: dict[str, int] = {}
        for change in self.source.history:
            latest[change.key] = max(latest.get(change.key, 0), change.version)
        for key, version in self.source.objects.items():
            latest[key] = max(latest.get(key, 0), version[0])
        seen: dict[str, int] = {}
        for key, version in self.store.history:
            assert version >= seen.get(key, 0), f"{key} went back to {version}"
            seen[key] = version
        for (_, key), row in self.store.rows.items():
            if not row.deleted:
                assert row.version <= latest.get(key, self.source.version)

    def teardown(self) -> None:
        try:
            self.store.fail_next = 0
            generation = self.rec.status.full_syncs
            self.rec.request_full_sync("teardown")
            self.l.run(asyncio.wait_for(self.rec.wait_synced(generation), 30))
            self.l.run(asyncio.wait_for(self.rec.caught_up(self.source.version), 30))
            assert_equal_truth(self.source, self.store)
        finally:
            self.rec.stop()
            self.l.run(asyncio.wait_for(self.task, 30))
            self.l.loop.close()


class GateDisabledMachine(ReconcilerMachine):
    """Row 33: without the gate the final state is the same (the truth)."""

    gate_enabled = False


machine_settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
TestReconcilerMachine = ReconcilerMachine.TestCase
TestReconcilerMachine.settings = machine_settings
TestGateDisabledMachine = GateDisabledMachine.TestCase
TestGateDisabledMachine.settings = machine_settings
