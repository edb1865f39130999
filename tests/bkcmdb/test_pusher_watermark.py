"""Rows that commit out of resource_version order: the desired index reads one window back,
so a row committed just after a higher one was read is still seen by the next incremental
push; a full sync's old-versioned rows are seen after the runner is told to sweep."""

from __future__ import annotations

from pusher_support import Rows

from synchronizer.bkcmdb.pusher import MemoryDesiredState, Table
from synchronizer.bkcmdb.pusher.index import DesiredIndex


async def test_a_row_committed_late_below_the_watermark_is_read_next_time() -> None:
    desired = MemoryDesiredState()
    rows = Rows("c1", desired)
    rows.namespace("a")
    index = DesiredIndex("c1", "kube")
    await index.sweep(desired)
    rows.namespace("b", uid="ns-b")  # rv 2
    rows.namespace("d", uid="ns-d")  # rv 3
    desired.purge("c1", Table.NAMESPACES, "ns-b")  # rv 2 has not committed yet ...
    await index.catch_up(desired)
    assert set(index.namespaces) == {"ns-a", "ns-d"} and index.watermark == 3
    desired.put("c1", Table.NAMESPACES, {"uid": "ns-b", "name": "b", "labels": "{}",
                                          "resource_version": 2})  # ... now it has
    await index.catch_up(desired)
    assert set(index.namespaces) == {"ns-a", "ns-b", "ns-d"}


async def test_the_window_moves_on() -> None:
    desired = MemoryDesiredState()
    rows = Rows("c1", desired)
    for n in range(5):
        rows.namespace(f"n{n}")
    index = DesiredIndex("c1", "kube")
    await index.sweep(desired)
    assert await index.catch_up(desired) == 0  # nothing new since the sweep
    rows.namespace("x")
    assert await index.catch_up(desired) == 1
    assert await index.catch_up(desired) == 1  # the previous window, read once more
    assert await index.catch_up(desired) == 0
