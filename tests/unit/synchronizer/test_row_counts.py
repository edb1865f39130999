"""Row counts for /status and the `rows` gauge: a kind at a time for every cluster that
needs it (a 200-cluster /status counted cluster by cluster was 1,600 queries)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler import ClusterId, NullMetrics
from synchronizer.kinds import NODES, PODS, Kind
from synchronizer.status import RowCounts

ROWS = {("pods", "a"): 5, ("pods", "b"): 7, ("nodes", "a"): 1, ("nodes", "b"): 2}


class Table:
    """Counts from `ROWS`, writing down each call (one per kind and set of clusters)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.rows = dict(ROWS)

    async def count(self, kind: Kind, clusters: Sequence[ClusterId]) -> Mapping[ClusterId, int]:
        self.calls.append((kind.name, sorted(clusters)))
        return {c: self.rows.get((kind.name, c), 0) for c in clusters}


KINDS_OF = {"pods": PODS, "nodes": NODES}


async def test_many_clusters_are_counted_with_one_call_per_kind_then_cached() -> None:
    table = Table()
    counts = RowCounts(count=table.count, metrics=NullMetrics())
    wanted = {ClusterId(c): KINDS_OF for c in ("a", "b", "c")}
    got = await counts.of_many(wanted)
    assert got == {"a": {"pods": 5, "nodes": 1}, "b": {"pods": 7, "nodes": 2},
                   "c": {"pods": 0, "nodes": 0}}
    assert sorted(table.calls) == [("nodes", ["a", "b", "c"]), ("pods", ["a", "b", "c"])]
    table.calls.clear()
    assert await counts.of(ClusterId("b"), KINDS_OF) == {"pods": 7, "nodes": 2}
    assert table.calls == []  # under COUNT_TTL old: the cache
    assert counts.peek(ClusterId("a")) == {"pods": 5, "nodes": 1}


async def test_only_the_kinds_that_wrote_are_counted_again() -> None:
    table = Table()
    counts = RowCounts(count=table.count, metrics=NullMetrics())
    await counts.of_many({ClusterId(c): KINDS_OF for c in ("a", "b")})
    table.calls.clear()
    table.rows[("pods", "a")] = 6
    table.rows[("nodes", "b")] = 9  # not said to have written: its old count stays
    got = await counts.of_many({ClusterId(c): KINDS_OF for c in ("a", "b")},
                               only={ClusterId("a"): {"pods"}})
    assert table.calls == [("pods", ["a"])]
    assert got == {"a": {"pods": 6, "nodes": 1}, "b": {"pods": 7, "nodes": 2}}


async def test_a_cluster_whose_kinds_changed_is_counted_in_full() -> None:
    table = Table()
    counts = RowCounts(count=table.count, metrics=NullMetrics())
    await counts.of_many({ClusterId("a"): {"pods": PODS}})
    table.calls.clear()
    got = await counts.of_many({ClusterId("a"): KINDS_OF}, only={ClusterId("a"): {"pods"}})
    assert sorted(table.calls) == [("nodes", ["a"]), ("pods", ["a"])]
    assert got == {"a": {"pods": 5, "nodes": 1}}
