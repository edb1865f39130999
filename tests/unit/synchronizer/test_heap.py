"""The heap keeper: freeze when the last full sync ends, and at a bounded rate as full syncs
end while others run; collect in full."""

from __future__ import annotations

import asyncio
import gc

import pytest

from synchronizer.heap import FullSyncSlots, HeapKeeper
from synchronizer.metrics import PrometheusMetrics


class Told:
    """A keeper that writes down what the slots told it, with the busy count then."""

    def __init__(self) -> None:
        self.slots: FullSyncSlots | None = None
        self.said: list[tuple[str, int]] = []

    def settled(self) -> None:
        assert self.slots is not None
        self.said.append(("settled", self.slots.busy))

    def progressed(self) -> None:
        assert self.slots is not None
        self.said.append(("progressed", self.slots.busy))


def told_slots(value: int) -> tuple[FullSyncSlots, Told]:
    told = Told()
    told.slots = FullSyncSlots(value, told)
    return told.slots, told


@pytest.fixture
def unfrozen():
    """Leave the test process's collector as it was found."""
    yield
    gc.unfreeze()


async def test_settled_is_called_once_when_no_full_sync_runs_or_waits() -> None:
    slots, told = told_slots(1)
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with slots:
            first_in.set()
            await release_first.wait()

    async def second() -> None:
        async with slots:
            pass

    one = asyncio.create_task(first())
    await first_in.wait()
    two = asyncio.create_task(second())
    await asyncio.sleep(0)  # the second is now waiting for the slot
    assert slots.busy == 2
    release_first.set()
    await asyncio.gather(one, two)
    # when the first handed its slot to the waiting second, only progress
    assert told.said == [("progressed", 1), ("settled", 0)]


async def test_a_cancelled_waiter_still_counts_out() -> None:
    slots, told = told_slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.busy == 1 and told.said == [("progressed", 1)]
    slots.release()
    assert slots.busy == 0 and told.said[-1] == ("settled", 0)


def test_settling_freezes_and_a_full_collection_frees_frozen_cycles(unfrozen) -> None:
    keeper = HeapKeeper()

    class Node:
        def __init__(self) -> None:
            self.me = self

    survivor = Node()
    keeper.settled()
    assert gc.get_freeze_count() > 0
    del survivor  # a cycle that died frozen: the young collections cannot see it
    assert gc.collect() == 0
    assert keeper.collect() >= 1
    assert gc.get_freeze_count() > 0  # frozen again after the collection


def test_starting_raises_the_young_threshold_and_freezes(unfrozen) -> None:
    before = gc.get_threshold()
    try:
        HeapKeeper(young=12_345).start()
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)


def test_progress_freezes_at_most_once_per_period(unfrozen, monkeypatch) -> None:
    """While full syncs keep ending, the heap is frozen again (a growing heap's full
    collections rescanned all of it), but not at every end: at most once a period."""
    now = [1000.0]
    monkeypatch.setattr("synchronizer.heap.time.monotonic", lambda: now[0])
    keeper = HeapKeeper(freeze_every=0.5)
    keeper.settled()
    gc.unfreeze()
    keeper.progressed()  # the last freeze is 0 s old
    assert gc.get_freeze_count() == 0
    now[0] += 0.5
    keeper.progressed()
    assert gc.get_freeze_count() > 0


def test_progress_freezes_without_collecting(unfrozen, monkeypatch) -> None:
    """A young collection while full syncs run scans only the live rows just built: the
    freeze of `progressed` does without one (what died waits for the full collection)."""
    collected: list[int] = []
    monkeypatch.setattr("synchronizer.heap.gc.collect",
                        lambda generation=2: collected.append(generation) or 0)
    keeper = HeapKeeper(freeze_every=0.0)
    keeper.progressed()
    assert gc.get_freeze_count() > 0 and collected == []
    keeper.settled()
    assert collected == [1]


def test_the_metrics_page_has_no_created_series() -> None:
    metrics = PrometheusMetrics()
    metrics.inc("events_total", {"cluster": "c", "kind": "pods", "type": "ADDED"})
    page = metrics.exposition().decode()
    assert "bkcmdb_sync_events_total{" in page and "_created" not in page
