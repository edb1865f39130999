"""The heap keeper: freeze when the last full sync ends (not between two), collect in full."""

from __future__ import annotations

import asyncio
import gc

import pytest

from synchronizer.heap import FullSyncSlots, HeapKeeper
from synchronizer.metrics import PrometheusMetrics


@pytest.fixture
def unfrozen():
    """Leave the test process's collector as it was found."""
    yield
    gc.unfreeze()


async def test_settled_is_called_once_when_no_full_sync_runs_or_waits() -> None:
    settled: list[int] = []
    slots = FullSyncSlots(1, lambda: settled.append(slots.busy))
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
    assert settled == [0]  # not when the first handed its slot to the waiting second


async def test_a_cancelled_waiter_still_counts_out() -> None:
    settled: list[int] = []
    slots = FullSyncSlots(1, lambda: settled.append(slots.busy))
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.busy == 1 and settled == []
    slots.release()
    assert slots.busy == 0 and settled == [0]


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


def test_the_metrics_page_has_no_created_series() -> None:
    metrics = PrometheusMetrics()
    metrics.inc("events_total", {"cluster": "c", "kind": "pods", "type": "ADDED"})
    page = metrics.exposition().decode()
    assert "bkcmdb_sync_events_total{" in page and "_created" not in page
