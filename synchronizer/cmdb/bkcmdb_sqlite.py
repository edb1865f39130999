"""The bk-cmdb pusher's stores on SQLite: desired state, ledger, durable tasks.

The same translation as `bkcmdb_mysql`, on the SQLite store's two worker threads: reads on
its reader connection (WAL lets them run beside a write), every write as one plain
function on its writer (`_Worker.call`), inside `BEGIN IMMEDIATE`.

SQLite has no row locks, so taking a task is the conditional-UPDATE form of the MWS
pattern: `BEGIN IMMEDIATE` takes the database's write lock first, then the due candidate is
read and `UPDATE … WHERE token = :seen AND next_start <= :now` claims it; the write lock
makes read and update one step for every process sharing the file, and the condition keeps
the statement correct on its own. `extend` and `close` name the token they took; SQLite's
row count is rows matched, so one changed row means the claim was still ours.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
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
from .rows import db_time
from .sqlite import _immediate, _Worker

_TASK_SELECT = f"SELECT {', '.join(TASK_COLUMNS)} FROM bkcmdb_tasks"
_LEDGER_UPSERT = (
    f"INSERT INTO bkcmdb_ledger ({', '.join(LEDGER_COLUMNS)}, updated_at) VALUES"
    f" ({', '.join('?' * (len(LEDGER_COLUMNS) + 1))}) ON CONFLICT (cluster_id, kind, uid)"
    " DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}"
                                  for c in (*LEDGER_COLUMNS[3:], "updated_at")))


class SQLiteDesiredState:
    """`DesiredState` over the kind tables."""

    def __init__(self, reader: _Worker) -> None:
        self._reader = reader

    async def _select(self, cluster: str, table: Table, extra: str,
                      args: tuple[Any, ...]) -> list[Row]:
        names = desired_columns(table)
        sql = (f"SELECT {', '.join(names)} FROM {KIND_OF[table].table}"
               f" WHERE cluster_id = ?{extra}")

        def job(conn: sqlite3.Connection) -> list[Row]:
            return [dict(zip(names, row, strict=True))
                    for row in conn.execute(sql, (cluster, *args))]
        return await self._reader.call(job)

    async def rows(self, cluster: str, table: Table) -> Sequence[Row]:
        """Every row of `cluster` in `table`, Active and Deleted."""
        return await self._select(cluster, table, "", ())

    async def changed_since(self, cluster: str, table: Table, version: int) -> Sequence[Row]:
        """The rows above `version` (an index range of `(cluster_id, resource_version)`)."""
        return await self._select(cluster, table, " AND resource_version > ?", (int(version),))


class SQLiteLedger:
    """`Ledger` on `bkcmdb_ledger`."""

    def __init__(self, reader: _Worker, writer: _Worker) -> None:
        self._reader = reader
        self._writer = writer

    async def entries(self, cluster: str) -> Sequence[LedgerEntry]:
        """Every entry of `cluster`."""
        def job(conn: sqlite3.Connection) -> list[LedgerEntry]:
            return [entry_of(row) for row in conn.execute(
                "SELECT kind, uid, bk_id, digest, name, namespace, bk_kind, parents"
                " FROM bkcmdb_ledger WHERE cluster_id = ?", (cluster,))]
        return await self._reader.call(job)

    async def write(self, cluster: str, *, upsert: Sequence[LedgerEntry] = (),
                    delete: Sequence[EntryKey] = ()) -> None:
        """Remove `delete`, then insert or replace `upsert`, in one transaction."""
        if not upsert and not delete:
            return
        now = db_time(datetime.now(UTC))
        gone = [(cluster, str(kind), uid) for kind, uid in delete]
        made = [(*entry_values(cluster, entry), now) for entry in upsert]

        def job(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.executemany("DELETE FROM bkcmdb_ledger WHERE cluster_id = ? AND kind = ?"
                                 " AND uid = ?", gone)
                conn.executemany(_LEDGER_UPSERT, made)
        await self._writer.call(job)


class SQLiteTaskQueue:
    """`TaskQueue` and `TaskBoard` on `bkcmdb_tasks` (see the module docstring)."""

    def __init__(self, reader: _Worker, writer: _Worker, *, clock: Clock = time.time) -> None:
        self._reader = reader
        self._writer = writer
        self._clock = clock

    async def ensure(self, cluster: str, job: str) -> None:
        """Create the task, due now, unless it exists."""
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute("INSERT INTO bkcmdb_tasks (cluster_id, job, next_start)"
                             " VALUES (?, ?, ?) ON CONFLICT (cluster_id, job) DO NOTHING",
                             (cluster, job, now))
        await self._writer.call(run)

    async def take(self, owner: str, hold: float, *,
                   clusters: Collection[str]) -> Task | None:
        """Claim the task due longest among `clusters` until now + `hold`."""
        wanted = sorted(set(clusters))
        if not wanted:
            return None
        now = self._clock()

        def run(conn: sqlite3.Connection) -> Task | None:
            with _immediate(conn):
                # a temporary table, not a long IN list: hundreds of clusters stay one query
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS bkcmdb_owned"
                             " (cluster_id TEXT PRIMARY KEY)")
                conn.execute("DELETE FROM bkcmdb_owned")
                conn.executemany("INSERT INTO bkcmdb_owned VALUES (?)", [(c,) for c in wanted])
                due = conn.execute(
                    "SELECT cluster_id, job, token FROM bkcmdb_tasks WHERE next_start <= ? AND"
                    " cluster_id IN (SELECT cluster_id FROM bkcmdb_owned)"
                    " ORDER BY next_start, cluster_id, job LIMIT ?",
                    (now, TAKE_CANDIDATES)).fetchall()
                for cluster, job, token in due:
                    changed = conn.execute(
                        "UPDATE bkcmdb_tasks SET next_start = ?, token = token + 1, owner = ?,"
                        " started_at = ? WHERE cluster_id = ? AND job = ? AND token = ? AND"
                        " next_start <= ?", (now + hold, owner, now, cluster, job, token, now))
                    if changed.rowcount == 1:
                        return task_of(conn.execute(
                            f"{_TASK_SELECT} WHERE cluster_id = ? AND job = ?",
                            (cluster, job)).fetchone())
            return None
        return await self._writer.call(run)

    async def extend(self, task: Task, hold: float) -> Task | None:
        """Move the claim's end to now + `hold`, if the claim is still ours."""
        until = self._clock() + hold

        def run(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                return conn.execute(
                    "UPDATE bkcmdb_tasks SET next_start = ? WHERE cluster_id = ? AND job = ?"
                    " AND token = ?", (until, task.cluster, task.job, task.token)).rowcount
        return replace(task, next_start=until) if await self._writer.call(run) == 1 else None

    async def close(self, task: Task, *, result: str, error: str, attempts: int,
                    next_start: float, pending: int = 0) -> bool:
        """Record the run's outcome and the next start, if the claim is still ours."""
        result, error = outcome(result, error)
        now = self._clock()

        def run(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                return conn.execute(
                    "UPDATE bkcmdb_tasks SET result = ?, error = ?, attempts = ?,"
                    " next_start = ?, pending = ?, finished_at = ? WHERE cluster_id = ?"
                    " AND job = ? AND token = ?", (result, error, attempts, next_start, pending,
                                                   now, task.cluster, task.job, task.token)
                ).rowcount
        return bool(await self._writer.call(run) == 1)

    async def drop(self, cluster: str, job: str) -> None:
        """Remove the task."""
        def run(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute("DELETE FROM bkcmdb_tasks WHERE cluster_id = ? AND job = ?",
                             (cluster, job))
        await self._writer.call(run)

    async def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Task]:
        return await self._reader.call(
            lambda conn: [task_of(row) for row in conn.execute(sql, args)])

    async def pending(self) -> list[Task]:
        """Tasks whose last run left objects pending or ended in an error."""
        return await self._read(f"{_TASK_SELECT} WHERE pending > 0 OR error <> ''"
                                " ORDER BY cluster_id, job")

    async def status(self, cluster: str) -> list[Task]:
        """Every task of `cluster`."""
        return await self._read(f"{_TASK_SELECT} WHERE cluster_id = ? ORDER BY job", (cluster,))

    async def clusters(self, job: str) -> list[str]:
        """Every cluster that has a task of `job`."""
        return await self._reader.call(lambda conn: [str(row[0]) for row in conn.execute(
            "SELECT cluster_id FROM bkcmdb_tasks WHERE job = ? ORDER BY cluster_id", (job,))])


def sqlite_tables(reader: _Worker, writer: _Worker, *, clock: Clock = time.time
                  ) -> BkCmdbTables:
    """The pusher's stores on one SQLite file (the store's own two connections)."""
    return BkCmdbTables(desired=SQLiteDesiredState(reader),
                        ledger=SQLiteLedger(reader, writer),
                        tasks=SQLiteTaskQueue(reader, writer, clock=clock))
