"""Full-sync `repair` records: at an equal version the list's content wins (TEST-MATRIX
row 30: rows edited out of band are repaired), and never otherwise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cmdb_support import CLUSTER, active, deleted, expected

from reconciler import ApplyResult


async def one(store: Any, key: str) -> dict[str, Any]:
    return {row["uid"]: row for row in await store.rows(CLUSTER)}[key]


async def test_repair_at_equal_version_restores_every_column_of_a_tampered_row(store):
    truth = active("p1", 9, variant=1)
    await store.apply(CLUSTER, [active("p1", 9, variant=2)])  # the "tampered" row
    assert await store.apply(CLUSTER, [truth]) == ApplyResult(written=0, unchanged=1)
    repaired = replace(truth, repair=True)
    assert await store.apply(CLUSTER, [repaired]) == ApplyResult(written=1, unchanged=0)
    assert await one(store, "p1") == expected(truth)
    assert await store.apply(CLUSTER, [repaired]) == ApplyResult(written=0, unchanged=1)


async def test_repair_revives_a_row_whose_state_alone_was_tampered(store):
    truth = active("p1", 9, variant=1)
    await store.apply(CLUSTER, [replace(truth, state=deleted("p1", 9).state)])
    assert (await one(store, "p1"))["state"] == "Deleted"
    await store.apply(CLUSTER, [replace(truth, repair=True)])
    assert await one(store, "p1") == expected(truth)


async def test_repair_never_overrides_a_newer_row(store):
    newer = active("p1", 12, variant=3)
    await store.apply(CLUSTER, [newer])
    before = await one(store, "p1")
    for old in (active("p1", 9, variant=1), deleted("p1", 11)):
        result = await store.apply(CLUSTER, [replace(old, repair=True)])
        assert result == ApplyResult(written=0, unchanged=1)
    assert await one(store, "p1") == before


async def test_mixed_batch_of_repair_and_event_records(store):
    await store.apply(CLUSTER, [active("a", 5, variant=1), active("b", 5, variant=1)])
    batch = [replace(active("a", 5, variant=2), repair=True), active("b", 5, variant=2),
             active("c", 1)]
    assert await store.apply(CLUSTER, batch) == ApplyResult(written=2, unchanged=1)
    assert (await one(store, "a"))["set_name"] == "set-2"
    assert (await one(store, "b"))["set_name"] == "set-1"
