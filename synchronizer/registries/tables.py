"""The registries' own tables in the CMDB: `topologies` and `registered_clusters` (step 4).

Small tables written rarely (an admin API call, a registry change), read by every
instance, on either backend: MySQL/MariaDB through the store's connection pool, SQLite
through the store's writer and reader connections (`SQLiteStore.call`). Both statements
sets are written out here side by side; nothing else in the product touches these tables.

`topologies` rows: name, version (grows on every write, deletes included), digest (of the
canonical document, tokens included: "same body" is "same digest"), body (the document as
JSON, NULL once deleted), updated_at. A write names the version it read (`expected`) and
succeeds only if the row still has it - an optimistic lock that serialises writers across
instances without holding a connection or a row lock while participants are verified.

`registered_clusters`: every cluster id a registry ever declared, `Declared` while some
registry declares it and `Removed` once it left them all and was dealt with
(`removal.Removal`); read after a restart, so a cluster removed while no master ran is
still found.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from synchronizer.cmdb.rows import db_time

DECLARED = "Declared"
REMOVED = "Removed"


@dataclass(frozen=True, slots=True)
class TopologyRow:
    """One row of `topologies` (body None: deleted)."""

    name: str
    version: int
    digest: str
    body: str | None
    updated_at: str


def _now() -> datetime:
    return datetime.now(UTC)


class RegistryTables:
    """Reads and writes of the registries' tables on one CMDB store."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._mysql = hasattr(store, "conn")

    # -- topologies ---------------------------------------------------------------------

    async def topologies(self) -> list[TopologyRow]:
        """Every row, deleted ones included, by name."""
        sql = "SELECT name, version, digest, body, updated_at FROM topologies ORDER BY name"
        if self._mysql:
            rows = await self._store.conn.query("topologies", sql)
        else:
            rows = await self._store.call(lambda c: c.execute(sql).fetchall(), write=False)
        return [TopologyRow(str(n), int(v), str(d), b, str(u)) for n, v, d, b, u in rows]

    async def topology(self, name: str) -> TopologyRow | None:
        """One row (deleted or not), or None if the name was never used."""
        if self._mysql:
            rows = await self._store.conn.query(
                "topology", "SELECT name, version, digest, body, updated_at FROM topologies"
                " WHERE name = %s", (name,))
        else:
            rows = await self._store.call(lambda c: c.execute(
                "SELECT name, version, digest, body, updated_at FROM topologies"
                " WHERE name = ?", (name,)).fetchall(), write=False)
        if not rows:
            return None
        n, v, d, b, u = rows[0]
        return TopologyRow(str(n), int(v), str(d), b, str(u))

    async def versions(self) -> dict[str, int]:
        """name → version of every row (a cheap "did anything change" probe)."""
        sql = "SELECT name, version FROM topologies"
        if self._mysql:
            rows = await self._store.conn.query("topology versions", sql)
        else:
            rows = await self._store.call(lambda c: c.execute(sql).fetchall(), write=False)
        return {str(n): int(v) for n, v in rows}

    async def write_topology(self, name: str, body: str | None, digest: str,
                             expected: int) -> bool:
        """Store `body` (None: delete) if the row is still at version `expected` (0: the
        name was never used). False when another writer got there first."""
        now = _now()
        if self._mysql:
            if expected == 0:
                return await self._insert_mysql(name, body, digest, now)
            changed = await self._store.conn.execute(
                "write topology", "UPDATE topologies SET version = version + 1, digest = %s,"
                " body = %s, updated_at = %s WHERE name = %s AND version = %s",
                (digest, body, now.replace(tzinfo=None), name, expected))
            return changed == 1

        def job(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if expected == 0:
                    done = conn.execute(
                        "INSERT OR IGNORE INTO topologies (name, version, digest, body,"
                        " updated_at) VALUES (?, 1, ?, ?, ?)",
                        (name, digest, body, db_time(now))).rowcount == 1
                else:
                    done = conn.execute(
                        "UPDATE topologies SET version = version + 1, digest = ?, body = ?,"
                        " updated_at = ? WHERE name = ? AND version = ?",
                        (digest, body, db_time(now), name, expected)).rowcount == 1
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return done
        return bool(await self._store.call(job, write=True))

    async def _insert_mysql(self, name: str, body: str | None, digest: str,
                            now: datetime) -> bool:
        changed = await self._store.conn.execute(
            "create topology", "INSERT IGNORE INTO topologies (name, version, digest, body,"
            " updated_at) VALUES (%s, 1, %s, %s, %s)",
            (name, digest, body, now.replace(tzinfo=None)))
        return changed == 1

    # -- registered clusters --------------------------------------------------------------

    async def registered(self) -> dict[str, str]:
        """cluster id → `Declared` or `Removed`."""
        sql = "SELECT cluster_id, state FROM registered_clusters"
        if self._mysql:
            rows = await self._store.conn.query("registered clusters", sql)
        else:
            rows = await self._store.call(lambda c: c.execute(sql).fetchall(), write=False)
        return {str(c): str(s) for c, s in rows}

    async def mark(self, clusters: Iterable[tuple[str, str]], state: str) -> None:
        """Record (cluster id, origin) pairs as `state`."""
        rows = list(clusters)
        if not rows:
            return
        now = _now()
        if self._mysql:
            async with self._store.conn.guard("mark clusters"), \
                    self._store.conn.transaction() as cur:
                await cur.executemany(
                    "INSERT INTO registered_clusters (cluster_id, origin, state, updated_at)"
                    " VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE origin ="
                    " VALUES(origin), state = VALUES(state), updated_at = VALUES(updated_at)",
                    [(c, o, state, now.replace(tzinfo=None)) for c, o in rows])
            return

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO registered_clusters (cluster_id, origin, state, updated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (cluster_id) DO UPDATE SET origin ="
                    " excluded.origin, state = excluded.state, updated_at = excluded.updated_at",
                    [(c, o, state, db_time(now)) for c, o in rows])
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        await self._store.call(job, write=True)
