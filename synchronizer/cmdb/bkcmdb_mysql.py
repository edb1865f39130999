"""The bk-cmdb pusher's stores on MySQL/MariaDB: desired state, ledger, durable tasks.

Each is a translation of the in-memory reference of `synchronizer.bkcmdb.pusher` onto the
tables of `bkcmdb_schema`, through the store's own connection (`MySQLConnection`: its pool,
`transaction`, `guard` that maps driver errors to `Transient`/`StoreError`, `query`).

Taking a task is the MWS pattern of DESIGN §8 in one short transaction: select the due
task that waited longest among the clusters this instance owns, `FOR UPDATE SKIP LOCKED`
(so two takers racing for the same row do not queue behind each other: the second simply
sees the next one), then a conditional UPDATE that moves `next_start` to now + hold and
bumps `token`; the UPDATE also names the token and `next_start <= now` it read, so it is
correct on a server without SKIP LOCKED too (MariaDB before 10.6, MySQL before 8), where
the SELECT takes no lock and the loser's UPDATE, evaluated against the winner's committed
row, changes nothing — it then tries the next candidate.

`extend` and `close` lock the row (`SELECT token … FOR UPDATE`) and write only if the token
is still the one taken. They do not trust the UPDATE's row count: MySQL reports rows
*changed*, not matched, so an extend that lands on the same `next_start` would look lost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from synchronizer.bkcmdb.pusher.desired import Row, Table
from synchronizer.bkcmdb.pusher.ledger import EntryKey, LedgerEntry
from synchronizer.bkcmdb.pusher.tasks import Task

from .bkcmdb_tables import (
    KIND_OF,
    LEDGER_COLUMNS,
    TAKE_CANDIDATES,
    TASK_COLUMNS,
    BkCmdbTables,
    Clock,
    desired_columns,
    entry_of,
    entry_values,
    outcome,
    task_of,
)
from .mysql_conn import MySQLConnection

CHUNK = 500
"""Ledger rows per `executemany` round trip (a pusher batch is at most 200)."""
_TASK_SELECT = "SELECT " + ", ".join(f"`{c}`" for c in TASK_COLUMNS) + " FROM bkcmdb_tasks"
_LEDGER_UPSERT = (
    "INSERT INTO bkcmdb_ledger (" + ", ".join(LEDGER_COLUMNS) + ", updated_at) VALUES ("
    + ", ".join(["%s"] * len(LEDGER_COLUMNS)) + ", NOW(6)) ON DUPLICATE KEY UPDATE "
    + ", ".join(f"{c} = VALUES({c})" for c in (*LEDGER_COLUMNS[3:], "updated_at")))


def skips_locked(server: str) -> bool:
    """Whether `SELECT … FOR UPDATE SKIP LOCKED` exists on this server (its VERSION())."""
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", server)
    if found is None:
        return False
    major, minor, patch = (int(x or 0) for x in found.groups())
    if "mariadb" in server.lower():
        return (major, minor) >= (10, 6)
    return (major, minor, patch) >= (8, 0, 1)


class MySQLDesiredState:
    """`DesiredState` over the kind tables."""

    def __init__(self, conn: MySQLConnection) -> None:
        self._conn = conn

    async def _select(self, cluster: str, table: Table, extra: str,
                      args: tuple[Any, ...]) -> list[Row]:
        names = desired_columns(table)
        found = await self._conn.query(
            f"{table} rows of {cluster}", f"SELECT {', '.join(f'`{c}`' for c in names)}"
            f" FROM `{KIND_OF[table].table}` WHERE cluster_id = %s{extra}", (cluster, *args))
        return [dict(zip(names, row, strict=True)) for row in found]

    async def rows(self, cluster: str, table: Table) -> Sequence[Row]:
        """Every row of `cluster` in `table`, Active and Deleted."""
        return await self._select(cluster, table, "", ())

    async def changed_since(self, cluster: str, table: Table, version: int) -> Sequence[Row]:
        """The rows above `version` (an index range of `(cluster_id, resource_version)`)."""
        return await self._select(cluster, table, " AND resource_version > %s", (int(version),))


class MySQLLedger:
    """`Ledger` on `bkcmdb_ledger`."""

    def __init__(self, conn: MySQLConnection) -> None:
        self._conn = conn

    async def entries(self, cluster: str) -> Sequence[LedgerEntry]:
        """Every entry of `cluster`."""
        found = await self._conn.query(
            f"ledger of {cluster}", "SELECT kind, uid, bk_id, digest, name, namespace,"
            " bk_kind, parents FROM bkcmdb_ledger WHERE cluster_id = %s", (cluster,))
        return [entry_of(row) for row in found]

    async def write(self, cluster: str, *, upsert: Sequence[LedgerEntry] = (),
                    delete: Sequence[EntryKey] = ()) -> None:
        """Remove `delete`, then insert or replace `upsert`, in one transaction."""
        if not upsert and not delete:
            return
        gone = [(cluster, str(kind), uid) for kind, uid in delete]
        made = [entry_values(cluster, entry) for entry in upsert]
        async with self._conn.guard(f"ledger of {cluster}"), self._conn.transaction() as cur:
            for start in range(0, len(gone), CHUNK):
                await cur.executemany("DELETE FROM bkcmdb_ledger WHERE cluster_id = %s AND"
                                      " kind = %s AND uid = %s", gone[start:start + CHUNK])
            for start in range(0, len(made), CHUNK):
                await cur.executemany(_LEDGER_UPSERT, made[start:start + CHUNK])


class MySQLTaskQueue:
    """`TaskQueue` and `TaskBoard` on `bkcmdb_tasks` (see the module docstring)."""

    def __init__(self, conn: MySQLConnection, *, clock: Clock = time.time,
                 skip_locked: bool | None = None) -> None:
        self._conn = conn
        self._clock = clock
        self.skip_locked = skips_locked(conn.server) if skip_locked is None else skip_locked

    async def ensure(self, cluster: str, job: str) -> None:
        """Create the task, due now, unless it exists."""
        await self._conn.execute(
            f"task of {cluster}", "INSERT INTO bkcmdb_tasks (cluster_id, job, next_start)"
            " VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE cluster_id = cluster_id",
            (cluster, job, self._clock()))

    async def take(self, owner: str, hold: float, *,
                   clusters: Collection[str]) -> Task | None:
        """Claim the task due longest among `clusters` until now + `hold`."""
        wanted = sorted(set(clusters))
        if not wanted:
            return None
        now = self._clock()
        marks = ", ".join(["%s"] * len(wanted))
        lock = " FOR UPDATE SKIP LOCKED" if self.skip_locked else ""
        limit = 1 if self.skip_locked else TAKE_CANDIDATES
        async with self._conn.guard("take a task"), self._conn.transaction() as cur:
            await cur.execute(
                "SELECT cluster_id, job, token FROM bkcmdb_tasks WHERE next_start <= %s AND"
                f" cluster_id IN ({marks}) ORDER BY next_start, cluster_id, job"
                f" LIMIT {limit}{lock}", (now, *wanted))
            for cluster, job, token in await cur.fetchall():
                await cur.execute(
                    "UPDATE bkcmdb_tasks SET next_start = %s, token = token + 1, `owner` = %s,"
                    " started_at = %s WHERE cluster_id = %s AND job = %s AND token = %s AND"
                    " next_start <= %s", (now + hold, owner, now, cluster, job, token, now))
                if cur.rowcount == 1:
                    await cur.execute(f"{_TASK_SELECT} WHERE cluster_id = %s AND job = %s",
                                      (cluster, job))
                    return task_of(await cur.fetchone())
        return None

    async def _held(self, cur: Any, task: Task) -> bool:
        await cur.execute("SELECT token FROM bkcmdb_tasks WHERE cluster_id = %s AND job = %s"
                          " FOR UPDATE", (task.cluster, task.job))
        found = await cur.fetchone()
        return found is not None and int(found[0]) == task.token

    async def extend(self, task: Task, hold: float) -> Task | None:
        """Move the claim's end to now + `hold`, if the claim is still ours."""
        until = self._clock() + hold
        async with self._conn.guard(f"task of {task.cluster}"), \
                self._conn.transaction() as cur:
            if not await self._held(cur, task):
                return None
            await cur.execute("UPDATE bkcmdb_tasks SET next_start = %s WHERE cluster_id = %s"
                              " AND job = %s", (until, task.cluster, task.job))
        return replace(task, next_start=until)

    async def close(self, task: Task, *, result: str, error: str, attempts: int,
                    next_start: float, pending: int = 0) -> bool:
        """Record the run's outcome and the next start, if the claim is still ours."""
        result, error = outcome(result, error)
        async with self._conn.guard(f"task of {task.cluster}"), \
                self._conn.transaction() as cur:
            if not await self._held(cur, task):
                return False
            await cur.execute(
                "UPDATE bkcmdb_tasks SET `result` = %s, `error` = %s, attempts = %s,"
                " next_start = %s, pending = %s, finished_at = %s WHERE cluster_id = %s"
                " AND job = %s", (result, error, attempts, next_start, pending, self._clock(),
                                  task.cluster, task.job))
        return True

    async def drop(self, cluster: str, job: str) -> None:
        """Remove the task."""
        await self._conn.execute(f"task of {cluster}", "DELETE FROM bkcmdb_tasks WHERE"
                                 " cluster_id = %s AND job = %s", (cluster, job))

    async def pending(self) -> list[Task]:
        """Tasks whose last run left objects pending or ended in an error."""
        found = await self._conn.query("pending tasks", f"{_TASK_SELECT} WHERE pending > 0"
                                       " OR `error` <> '' ORDER BY cluster_id, job")
        return [task_of(row) for row in found]

    async def status(self, cluster: str) -> list[Task]:
        """Every task of `cluster`."""
        found = await self._conn.query(f"tasks of {cluster}", f"{_TASK_SELECT} WHERE"
                                       " cluster_id = %s ORDER BY job", (cluster,))
        return [task_of(row) for row in found]

    async def clusters(self, job: str) -> list[str]:
        """Every cluster that has a task of `job`."""
        found = await self._conn.query("task clusters", "SELECT cluster_id FROM bkcmdb_tasks"
                                       " WHERE job = %s ORDER BY cluster_id", (job,))
        return [str(row[0]) for row in found]


def mysql_tables(conn: MySQLConnection, *, clock: Clock = time.time) -> BkCmdbTables:
    """The pusher's stores on this connection's database."""
    return BkCmdbTables(desired=MySQLDesiredState(conn), ledger=MySQLLedger(conn),
                        tasks=MySQLTaskQueue(conn, clock=clock))
