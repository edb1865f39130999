"""The desired state: the CMDB tables' rows of one cluster, as the pusher reads them.

The tables (`namespaces`, `nodes`, `workloads`, `pods`) are the record of what should be; the
pusher makes bk-cmdb equal to them. It reads them through a two-method protocol so the store
side (MySQL or SQLite, written elsewhere) plugs in without the pusher knowing SQL:

- `rows(cluster, table)`: every row of the cluster in that table, Active and Deleted — a
  "sweep", the whole truth at one moment;
- `changed_since(cluster, table, version)`: the rows whose `resource_version` is above
  `version` (Deleted ones included) — what an incremental push reads, so a push with nothing
  new costs one cheap indexed query per table and no bk-cmdb request at all.

Rows are plain dicts with the tables' column names; JSON columns (`labels`, `containers`,
`images`) are JSON text, as the database returns them.

Why the pusher does not trust `changed_since` alone: rows of one cluster are written by
several shards in separate transactions, so a row with a lower resource_version can commit
after a higher one was read, and a watermark would skip it; rows may also be purged. The
pusher therefore sweeps (`rows`) on its first push, at every full reconcile and every
`sweep` seconds, and reads `changed_since` in between. A SQL implementation needs an index
on `(cluster_id, resource_version)` for the latter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

Row = Mapping[str, Any]


class Table(StrEnum):
    """The CMDB tables the pusher reads, in creation order."""

    NAMESPACES = "namespaces"
    NODES = "nodes"
    WORKLOADS = "workloads"
    PODS = "pods"


class DesiredState(Protocol):
    """Read the tables' rows of one cluster."""

    async def rows(self, cluster: str, table: Table) -> Sequence[Row]:
        """Every row of `cluster` in `table`, Active and Deleted."""
        ...

    async def changed_since(self, cluster: str, table: Table, version: int) -> Sequence[Row]:
        """The rows of `cluster` in `table` whose resource_version is above `version`."""
        ...


class MemoryDesiredState:
    """`DesiredState` over dicts, for tests: `put` a row, `delete` marks it Deleted.

    Every write takes the next resource_version of its cluster (one sequence per cluster
    orders all tables, as etcd's revision does), unless the row carries one.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, Table], dict[str, dict[str, Any]]] = {}
        self._versions: dict[str, int] = {}
        self.reads = 0
        """Calls answered, so tests can see what a push read."""

    def _next(self, cluster: str) -> int:
        self._versions[cluster] = self._versions.get(cluster, 0) + 1
        return self._versions[cluster]

    def put(self, cluster: str, table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or replace a row (by uid); it becomes Active unless it says otherwise."""
        stored = {"state": "Active", "truncated": 0, **row, "cluster_id": cluster}
        if "resource_version" not in row:
            stored["resource_version"] = self._next(cluster)
        else:
            self._versions[cluster] = max(self._versions.get(cluster, 0),
                                          int(row["resource_version"]))
        self._rows.setdefault((cluster, table), {})[str(stored["uid"])] = stored
        return stored

    def delete(self, cluster: str, table: Table, uid: str) -> None:
        """Mark a row Deleted (a tombstone, as the product's merge rule does)."""
        row = self._rows.get((cluster, table), {}).get(uid)
        if row is not None:
            self.put(cluster, table, {**row, "state": "Deleted",
                                      "resource_version": self._next(cluster)})

    def purge(self, cluster: str, table: Table, uid: str) -> None:
        """Remove a row entirely (tombstones are purged eventually)."""
        self._rows.get((cluster, table), {}).pop(uid, None)

    def get(self, cluster: str, table: Table, uid: str) -> dict[str, Any] | None:
        """One stored row, or None."""
        return self._rows.get((cluster, table), {}).get(uid)

    def active(self, cluster: str, table: Table) -> list[dict[str, Any]]:
        """The Active rows of a table."""
        return [r for r in self._rows.get((cluster, table), {}).values()
                if r["state"] == "Active"]

    async def rows(self, cluster: str, table: Table) -> Sequence[Row]:
        """Every row of `cluster` in `table`."""
        self.reads += 1
        return [dict(r) for r in self._rows.get((cluster, table), {}).values()]

    async def changed_since(self, cluster: str, table: Table, version: int) -> Sequence[Row]:
        """Rows above `version`."""
        self.reads += 1
        return [dict(r) for r in self._rows.get((cluster, table), {}).values()
                if int(r["resource_version"]) > version]
