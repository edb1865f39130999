"""A cluster's desired state in memory: its Active rows as wanted values, kept current.

The pusher compares the tables with its ledger on every push; reading every row every few
seconds would cost the database more than the comparison costs the pusher. So it keeps the
Active rows of each cluster it pushes, mapped (`mapping`), and brings them up to date by
reading only what changed since the highest resource_version it has seen (`catch_up`), with
a whole read (`sweep`) now and then to catch what a watermark cannot see (see `desired`).

Why `catch_up` reads from the watermark of the *previous* catch-up, not the latest one:
rows of one cluster commit out of resource_version order (shards and kinds write in
parallel transactions, a few milliseconds apart), so a row below the latest watermark can
land just after a read. Reading one window back (the rows of about one push period, read
again and found unchanged: no request) catches every such row that commits within a period
of a higher one. What commits later than that — a full sync's rows, which carry its list's
older version — needs a sweep, which the runner schedules after every full sync.

Memory is the size of the tables' Active rows, never of the changes: a row changed a
thousand times while bk-cmdb was unreachable is still one value here — the pusher holds the
difference, not a queue of events. Deleted rows are dropped on sight (the ledger entry they
leave behind is what says "delete it in bk-cmdb").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .desired import DesiredState, Row, Table
from .mapping import BadRow, WantedNamespace, WantedNode, WantedPod, WantedWorkload

ACTIVE = "Active"


@dataclass(slots=True)
class DesiredIndex:
    """The Active rows of one cluster, as wanted values, by uid."""

    cluster: str
    api: str
    namespaces: dict[str, WantedNamespace] = field(default_factory=dict)
    nodes: dict[str, WantedNode] = field(default_factory=dict)
    workloads: dict[str, WantedWorkload] = field(default_factory=dict)
    pods: dict[str, WantedPod] = field(default_factory=dict)
    bad: dict[tuple[Table, str], str] = field(default_factory=dict)
    """Active rows that could not be read: (table, uid) → the problem. Their last good
    value, if there was one, stays in the maps above."""
    watermark: int = 0
    """The highest resource_version seen."""
    lagged: int = 0
    """The watermark as it was when the previous read began; `catch_up` reads above it."""
    swept: bool = False

    def _tables(self) -> Mapping[Table, dict[str, Any]]:
        return {Table.NAMESPACES: self.namespaces, Table.NODES: self.nodes,
                Table.WORKLOADS: self.workloads, Table.PODS: self.pods}

    def bad_uids(self, table: Table) -> set[str]:
        """The uids of unreadable Active rows of `table`."""
        return {uid for (t, uid) in self.bad if t == table}

    async def sweep(self, source: DesiredState) -> int:
        """Replace everything with a whole read of the tables; returns rows read."""
        read = 0
        fresh = DesiredIndex(self.cluster, self.api)
        for table in Table:
            rows = await source.rows(self.cluster, table)
            read += len(rows)
            fresh._apply_all(table, rows)
        old, new = self._tables(), fresh._tables()
        for table, uid in fresh.bad:  # unreadable now: keep what was good before
            if uid in old[table] and uid not in new[table]:
                new[table][uid] = old[table][uid]
        self.namespaces, self.nodes = fresh.namespaces, fresh.nodes
        self.workloads, self.pods, self.bad = fresh.workloads, fresh.pods, fresh.bad
        before = self.watermark
        self.watermark = max(self.watermark, fresh.watermark)
        self.lagged = before if self.swept else self.watermark
        self.swept = True
        return read

    async def catch_up(self, source: DesiredState) -> int:
        """Apply the rows changed since the watermark; returns rows read."""
        if not self.swept:
            return await self.sweep(source)
        read = 0
        since, self.lagged = self.lagged, self.watermark
        for table in Table:
            rows = await source.changed_since(self.cluster, table, since)
            read += len(rows)
            self._apply_all(table, rows)
        return read

    def _apply_all(self, table: Table, rows: Sequence[Row]) -> None:
        # a uid may appear more than once (a tombstone and a later row): the highest wins
        for row in sorted(rows, key=lambda r: int(r.get("resource_version") or 0)):
            self._apply(table, row)

    def _apply(self, table: Table, row: Row) -> None:
        uid = str(row["uid"])
        self.watermark = max(self.watermark, int(row.get("resource_version") or 0))
        target = self._tables()[table]
        self.bad.pop((table, uid), None)
        if row.get("state") != ACTIVE:
            target.pop(uid, None)
            return
        try:
            wanted = self._map(table, row)
        except (BadRow, KeyError, TypeError, ValueError) as exc:
            # keep the last good value, if any: the object stays as it was (and its
            # children keep their parent) until the row can be read again
            self.bad[(table, uid)] = str(exc) if isinstance(exc, BadRow) else \
                f"row {uid!r}: {type(exc).__name__}: {exc}"
            return
        if wanted is None:
            target.pop(uid, None)
        else:
            target[uid] = wanted

    def _map(self, table: Table, row: Row) -> Any:
        if table is Table.NAMESPACES:
            return WantedNamespace.from_row(row)
        if table is Table.NODES:
            return WantedNode.from_row(row)
        if table is Table.WORKLOADS:
            return WantedWorkload.from_row(row)
        return WantedPod.from_row(row, api=self.api)

    def size(self) -> int:
        """Wanted values held (the memory bound is this, whatever the churn)."""
        return len(self.namespaces) + len(self.nodes) + len(self.workloads) + len(self.pods)
