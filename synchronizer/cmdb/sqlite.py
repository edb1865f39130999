"""The embedded CMDB: SQLite, with the same tables, rule and leases as MySQL.

Why threads and not aiosqlite: a transaction here is several statements (fence check,
chunks of upserts, maybe a row-by-row retry and dead letters) that must not interleave with
another coroutine's on the same connection. Running each whole transaction as one plain
`sqlite3` function on a dedicated single-thread executor makes that true by construction
and costs one thread hop per batch instead of one per statement. A second thread with its
own connection serves reads, which WAL lets proceed while a write is in progress.

Write transactions start with `BEGIN IMMEDIATE`, taking SQLite's write lock up front, so
the fence check and the write see and hold the same state, and two processes on one file
queue on the busy timeout instead of failing with a lock upgrade error.

The merge rule is one statement per chunk: `INSERT ... ON CONFLICT DO UPDATE SET ... WHERE`
with `excluded.` values. SQLite evaluates every SET expression against the row as it was
before the update, so, unlike MySQL, no column's new value can leak into another's guard.
Leases use this machine's clock: an SQLite file is only ever shared by processes on one
host, so there is no skew to guard against.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler import (
    ApplyResult,
    ClusterId,
    Fence,
    Fenced,
    ObjectKey,
    Record,
    State,
    StoredIndex,
    StoreError,
    Transient,
    WriteGroup,
)
from synchronizer.kinds import Kind, Resource
from synchronizer.kinds.descriptor import SEPARATOR, rendered

from .api import COUNT_CHUNK, Fixed, KindTable, checked_columns, register
from .dsn import parse_sqlite
from .rows import (
    ERROR_LIMIT,
    KEY_LIMIT,
    RELEASED,
    clean_text,
    column_names,
    db_time,
    dead_letter_payload,
    from_db_time,
    row,
)
from .schema import migrate_sqlite

if TYPE_CHECKING:
    from .bkcmdb_tables import BkCmdbTables

T = TypeVar("T")
BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another process's write lock before failing (Transient)."""
CHUNK_ROWS = 500
"""Rows per statement: 17 parameters each stays far below SQLite's 32766 variables."""
_TRANSIENT_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL",
                    "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_INTERRUPT")
_STATES = {state.value: state for state in State}


def _is_data_error(exc: BaseException) -> bool:
    """A row the database refused (constraint, type): isolate it, do not retry it."""
    return isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | UnicodeEncodeError
                      | OverflowError)


def _translate(exc: Exception) -> StoreError:
    """Map an sqlite3 error to the engine's kinds: busy/IO is worth a retry, the rest not."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if isinstance(exc, sqlite3.OperationalError) and name.startswith(_TRANSIENT_CODES):
        return Transient(f"sqlite: {exc}")
    return StoreError(f"sqlite: {type(exc).__name__}: {exc}")


def _sum(*values: Any) -> str:
    """`bk_sum(col, ...)`: the row checksum of `kinds.descriptor.row_checksum`, in SQL."""
    text = SEPARATOR.join(rendered(v) for v in values)
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def _content_sum(kind: Kind, table: str) -> str:
    return f"bk_sum({', '.join(f'{table}.{c.name}' for c in kind.stored)})"


@lru_cache(maxsize=64)
def _upsert_sql(kind: Kind, rows: int, repair: bool = False) -> str:
    """The conditional upsert of `rows` rows: the whole merge rule in one statement.

    A row changes only when the incoming version is newer and its checksum differs (a
    newer version of the same content writes nothing). `repair` (full-sync records) also
    acts at an equal version, and when state differs or the stored row's columns no longer
    hash to its checksum (edited behind our back), which repairs rows edited out of band.
    """
    t = kind.table
    differs = f"excluded.checksum <> {t}.checksum"
    newer = f"excluded.resource_version > {t}.resource_version"
    if repair:
        differs = (f"({differs} OR excluded.state <> {t}.state OR ({t}.state = 'Active'"
                   f" AND {t}.checksum <> {_content_sum(kind, t)}))")
        newer = f"excluded.resource_version >= {t}.resource_version"
    live = "excluded.state = 'Active'"
    assignments = [f"{c.name} = CASE WHEN {live} THEN excluded.{c.name} ELSE {t}.{c.name} END"
                   for c in kind.stored]
    assignments += [
        "state = excluded.state",
        "checksum = excluded.checksum",
        "resource_version = excluded.resource_version",
        "query_at = excluded.query_at",
    ]
    names = column_names(kind)
    one = "(" + ", ".join("?" * len(names)) + ")"
    return (
        f"INSERT INTO {t} ({', '.join(names)}) VALUES {', '.join([one] * rows)}"
        f" ON CONFLICT (cluster_id, uid) DO UPDATE SET {', '.join(assignments)}"
        f" WHERE {newer} AND {differs}"
    )


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction holding SQLite's write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now() -> str:
    return db_time(datetime.now(UTC))


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out another connection that holds the lock.

    Changing the journal mode needs an exclusive lock and SQLite does not always call the
    busy handler for it, so two stores opening one new file at once could fail with
    "database is locked"; WAL is a property of the file, so once either succeeds both do.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # in the store's worker thread, never on the event loop


class _Worker:
    """One sqlite3 connection used only from its own thread; jobs run one at a time."""

    def __init__(self, path: str, name: str) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def _run(self, job: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT, isolation_level=None)
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.create_function("bk_sum", -1, _sum, deterministic=True)
            self._conn = conn
        return job(self._conn, *args)

    async def call(self, job: Callable[..., T], *args: Any) -> T:
        """Run `job(connection, *args)` in the worker thread; translate sqlite3 errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, partial(self._run, job, *args))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        """Close the connection in its own thread, then let the thread end."""
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None
        if self._conn is not None:
            await self.call(shut)
        self._pool.shutdown(wait=False)


def _check_fence(conn: sqlite3.Connection, cluster: str, fence: Fence | None) -> None:
    if fence is None:
        return
    found = conn.execute("SELECT owner, epoch, expires_at > ? FROM leases WHERE cluster_id = ?",
                         (RELEASED, cluster)).fetchone()
    if found is None or found[0] != fence.owner or found[1] != fence.epoch or not found[2]:
        held = "nobody" if found is None or not found[2] else f"{found[0]} epoch {found[1]}"
        raise Fenced(f"cluster {cluster}: lease held by {held}, not {fence.owner} "
                     f"epoch {fence.epoch}")


def _apply(conn: sqlite3.Connection, kind: Kind, fixed: Fixed, cluster: str,
           batch: Sequence[Record], fence: Fence | None) -> ApplyResult:
    """Write a batch in one transaction; on a refused row, redo it row by row (see module)."""
    records = sorted(batch, key=lambda r: r.key)
    try:
        built = [row(kind, cluster, r, fixed) for r in records]
    except (TypeError, ValueError):
        built = []
    else:
        try:
            with _immediate(conn):
                _check_fence(conn, cluster, fence)
                written = 0
                for repair in (False, True):
                    group = [b for b, r in zip(built, records, strict=True)
                             if r.repair is repair]
                    for start in range(0, len(group), CHUNK_ROWS):
                        chunk = group[start:start + CHUNK_ROWS]
                        flat = [value for values in chunk for value in values]
                        written += conn.execute(_upsert_sql(kind, len(chunk), repair),
                                                flat).rowcount
            return ApplyResult(written=written, unchanged=len(built) - written)
        except Exception as exc:
            if not _is_data_error(exc):
                raise
    return _apply_rows(conn, kind, fixed, cluster, records, fence)


def _fenced(conn: sqlite3.Connection, fences: dict[str, Fence]) -> dict[str, Fenced]:
    out: dict[str, Fenced] = {}
    for cluster, fence in fences.items():
        try:
            _check_fence(conn, cluster, fence)
        except Fenced as exc:
            out[cluster] = exc
    return out


def _apply_groups(conn: sqlite3.Connection, groups: Sequence[WriteGroup]
                  ) -> list[ApplyResult | BaseException] | None:
    """Many (cluster, kind) groups in one transaction, each cluster fenced by its own lease;
    None when a row is refused (the caller then writes group by group)."""
    try:
        built = []
        for g in groups:
            table = _table(g)
            records = sorted(g.records, key=lambda r: r.key)
            built.append((g, table, records,
                          [row(table.kind, g.cluster, r, table.fixed) for r in records]))
    except (TypeError, ValueError):
        return None
    try:
        with _immediate(conn):
            fenced = _fenced(conn, {g.cluster: g.fence for g in groups if g.fence is not None})
            out: list[ApplyResult | BaseException] = []
            for g, table, records, values in built:
                if g.cluster in fenced:
                    out.append(fenced[g.cluster])
                    continue
                written = 0
                for repair in (False, True):
                    part = [v for v, r in zip(values, records, strict=True) if r.repair is repair]
                    for start in range(0, len(part), CHUNK_ROWS):
                        chunk = part[start:start + CHUNK_ROWS]
                        flat = [value for vals in chunk for value in vals]
                        written += conn.execute(_upsert_sql(table.kind, len(chunk), repair),
                                                flat).rowcount
                out.append(ApplyResult(written=written, unchanged=len(values) - written))
            return out
    except Exception as exc:
        if not _is_data_error(exc):
            raise
    return None


def _table(group: WriteGroup) -> KindTable:
    store = group.store
    if not isinstance(store, KindTable):
        raise TypeError(f"a group for {group.cluster} does not write to a CMDB table")
    return store


def _apply_rows(conn: sqlite3.Connection, kind: Kind, fixed: Fixed, cluster: str,
                records: Sequence[Record], fence: Fence | None) -> ApplyResult:
    """Write each record in its own statement of one transaction; dead-letter the refused."""
    written = 0
    rejected: list[tuple[ObjectKey, str]] = []
    with _immediate(conn):
        _check_fence(conn, cluster, fence)
        for record in records:
            try:
                values = row(kind, cluster, record, fixed)
                written += conn.execute(_upsert_sql(kind, 1, record.repair), values).rowcount
            except Exception as exc:
                if not (_is_data_error(exc) or isinstance(exc, TypeError | ValueError)):
                    raise
                error = clean_text(f"{exc}", ERROR_LIMIT)
                rejected.append((record.key, error))
                conn.execute(
                    'INSERT INTO dead_letters (cluster_id, kind, uid, error, payload, "at")'
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (clean_text(cluster, KEY_LIMIT), kind.name, clean_text(record.key, 255),
                     error, dead_letter_payload(record), _now()),
                )
    return ApplyResult(written=written, unchanged=len(records) - written - len(rejected),
                       rejected=tuple(rejected))


def _acquire(conn: sqlite3.Connection, cluster: str, fence: Fence, ttl: float) -> bool:
    now = datetime.now(UTC)
    with _immediate(conn):
        return conn.execute(
            "INSERT INTO leases (cluster_id, owner, epoch, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (cluster_id) DO UPDATE SET owner = excluded.owner,"
            " epoch = excluded.epoch, expires_at = excluded.expires_at"
            " WHERE leases.epoch < excluded.epoch"
            " OR (leases.owner = excluded.owner AND leases.epoch <= excluded.epoch)"
            " OR (leases.expires_at <= ? AND (leases.epoch <= excluded.epoch"
            " OR excluded.epoch = 0))",
            (cluster, fence.owner, fence.epoch,
             db_time(now + timedelta(seconds=max(ttl, 0.0))), db_time(now)),
        ).rowcount == 1


def _where(kind: Kind, fixed: Fixed) -> tuple[str, tuple[Any, ...]]:
    if fixed:
        assert kind.discriminator is not None
        return f" AND {kind.discriminator} = ?", (fixed[kind.discriminator],)
    return "", ()


class SQLiteStore:
    """Every kind's table, leases and dead letters on an SQLite file (the embedded CMDB)."""

    def __init__(self, path: str) -> None:
        """Prefer `await SQLiteStore.open(dsn)`, which also creates the tables."""
        self.path = path
        self._writer = _Worker(path, "cmdb-sqlite-writer")
        self._reader = _Worker(path, "cmdb-sqlite-reader")

    @property
    def dsn(self) -> str:
        """The DSN, for logs and /status (an SQLite DSN holds no secret)."""
        return f"sqlite:///{self.path}"

    def __repr__(self) -> str:
        return f"SQLiteStore({self.dsn})"

    @classmethod
    async def open(cls, dsn: str, *, migrate: bool = True, pool_size: int | None = None
                   ) -> SQLiteStore:
        """Open (creating the file, its directory and the tables if missing, unless
        `migrate` is False: then a missing file is an error and nothing is written).
        `pool_size` is accepted for symmetry: SQLite has one writer and one reader."""
        path = parse_sqlite(dsn)
        if not migrate and not os.path.exists(path):  # noqa: ASYNC240 - one stat call
            raise StoreError(f"sqlite: no such database file {path}")
        if migrate:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        store = cls(path)
        try:
            if migrate:
                await store._writer.call(migrate_sqlite)
        except BaseException:
            await store.close()
            raise
        return store

    def table(self, kind: Kind, resource: Resource | None = None) -> KindTable:
        """The engine's `Store` for `kind` (or one resource of it)."""
        return KindTable(self, kind, resource)

    async def load_index(self, kind: Kind, fixed: Fixed,
                         cluster: ClusterId) -> StoredIndex:
        """Version and checksum ('' if edited) of the Active rows of the view."""
        extra, args = _where(kind, fixed)
        sql = (f"SELECT uid, resource_version, CASE WHEN checksum = "
               f"{_content_sum(kind, kind.table)} THEN checksum ELSE '' END"
               f" FROM {kind.table} WHERE cluster_id = ? AND state = 'Active'{extra}")

        def job(conn: sqlite3.Connection) -> StoredIndex:
            return StoredIndex.of_rows(conn.execute(sql, (cluster, *args)).fetchall())
        return await self._reader.call(job)

    async def apply(self, kind: Kind, fixed: Fixed, cluster: ClusterId,
                    batch: Sequence[Record], fence: Fence | None) -> ApplyResult:
        """Write `batch` under the merge rule in one transaction (fenced when `fence`)."""
        return await self._writer.call(_apply, kind, fixed, cluster, batch, fence)

    async def reset_versions(self, kind: Kind, fixed: Fixed, cluster: ClusterId,
                             fence: Fence | None) -> int:
        """Every row of the view to version 0, Active checksums emptied; fenced; one
        transaction (see `reconciler.Store.reset_versions`)."""
        extra, args = _where(kind, fixed)
        sql = (f"UPDATE {kind.table} SET resource_version = 0, checksum = CASE WHEN"
               f" state = 'Active' THEN '' ELSE checksum END WHERE cluster_id = ?{extra}")

        def job(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                _check_fence(conn, cluster, fence)
                return conn.execute(sql, (cluster, *args)).rowcount
        return await self._writer.call(job)

    async def apply_groups(self, groups: Sequence[WriteGroup]
                           ) -> list[ApplyResult | BaseException]:
        """Write many groups in one transaction (see `MultiStore`); a refused row sends
        every group down the single-group path, which isolates and dead-letters it."""
        out = await self._writer.call(_apply_groups, groups)
        if out is not None:
            return out
        each: list[ApplyResult | BaseException] = []
        for g in groups:
            try:
                each.append(await g.store.apply(g.cluster, g.records, fence=g.fence))
            except Fenced as exc:
                each.append(exc)
        return each

    async def count_active(self, kind: Kind, fixed: Fixed, clusters: Sequence[ClusterId]
                           ) -> dict[ClusterId, int]:
        """Active rows of the view per cluster (index range counts); 0 for none."""
        extra, args = _where(kind, fixed)

        def job(conn: sqlite3.Connection) -> dict[ClusterId, int]:
            out = dict.fromkeys(clusters, 0)
            for at in range(0, len(clusters), COUNT_CHUNK):
                chunk = clusters[at:at + COUNT_CHUNK]
                sql = (f"SELECT cluster_id, COUNT(*) FROM {kind.table} WHERE cluster_id IN"
                       f" ({', '.join('?' * len(chunk))}) AND state = 'Active'{extra}"
                       " GROUP BY cluster_id")
                for cluster, n in conn.execute(sql, (*chunk, *args)):
                    out[ClusterId(cluster)] = int(n)
            return out
        return await self._reader.call(job)

    async def count_by_state(self, kind: Kind, cluster: ClusterId) -> dict[str, int]:
        """Rows of `cluster` per state, both states always present."""
        def job(conn: sqlite3.Connection) -> dict[str, int]:
            counts = dict.fromkeys(_STATES, 0)
            for state, n in conn.execute(f"SELECT state, COUNT(*) FROM {kind.table}"
                                         " WHERE cluster_id = ? GROUP BY state", (cluster,)):
                counts[state] = n
            return counts
        return await self._reader.call(job)

    async def rows(self, kind: Kind, fixed: Fixed, cluster: ClusterId) -> list[dict[str, Any]]:
        """Every column of every row of the view, by uid; query_at as aware UTC datetime."""
        names = column_names(kind)
        extra, args = _where(kind, fixed)

        def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute(f"SELECT {', '.join(names)} FROM {kind.table}"
                               f" WHERE cluster_id = ?{extra} ORDER BY uid", (cluster, *args))
            out = [dict(zip(names, values, strict=True)) for values in cur]
            for found in out:
                found["query_at"] = from_db_time(found["query_at"])
            return out
        return await self._reader.call(job)

    async def group_active(self, kind: Kind, cluster: ClusterId, columns: Sequence[str],
                           limit: int) -> list[tuple[Any, ...]]:
        """The largest groups of the cluster's Active rows by `columns`, with counts."""
        names = ", ".join(checked_columns(kind, columns))
        sql = (f"SELECT {names}, COUNT(*) AS n FROM {kind.table} WHERE cluster_id = ? AND"
               f" state = 'Active' GROUP BY {names} ORDER BY n DESC, {names} LIMIT ?")
        return await self._reader.call(
            lambda conn: [tuple(r) for r in conn.execute(sql, (cluster, int(limit)))])

    async def purge_tombstones(self, kind: Kind, cluster: ClusterId, before: datetime,
                               limit: int) -> int:
        """Delete up to `limit` tombstones of `cluster` observed before `before`."""
        def job(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                return conn.execute(
                    f"DELETE FROM {kind.table} WHERE rowid IN (SELECT rowid FROM {kind.table}"
                    " WHERE cluster_id = ? AND state = 'Deleted' AND query_at < ? LIMIT ?)",
                    (cluster, db_time(before), limit)).rowcount
        return await self._writer.call(job)

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """Take or renew `cluster`'s lease for `ttl` seconds; True when `fence` holds it."""
        return await self._writer.call(_acquire, cluster, fence, ttl)

    async def acquire_many(self, requests: Sequence[tuple[ClusterId, Fence]],
                           ttl: float) -> list[bool]:
        """`acquire` for many clusters in one call of the writer thread."""
        def job(conn: sqlite3.Connection) -> list[bool]:
            return [_acquire(conn, cluster, fence, ttl) for cluster, fence in requests]
        return await self._writer.call(job)

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """Expire the lease if `fence` holds it: a successor need not wait; the epoch stays."""
        def job(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute("UPDATE leases SET expires_at = ? WHERE cluster_id = ? AND"
                             " owner = ? AND epoch = ?",
                             (RELEASED, cluster, fence.owner, fence.epoch))
        await self._writer.call(job)

    async def lease(self, cluster: ClusterId) -> dict[str, Any] | None:
        """The lease row of `cluster` (owner, epoch, expires_at), expired or not."""
        def job(conn: sqlite3.Connection) -> dict[str, Any] | None:
            found = conn.execute("SELECT owner, epoch, expires_at FROM leases"
                                 " WHERE cluster_id = ?", (cluster,)).fetchone()
            if found is None:
                return None
            return {"owner": found[0], "epoch": found[1],
                    "expires_at": from_db_time(found[2])}
        return await self._reader.call(job)

    async def dead_letters(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """Refused rows of `cluster`, oldest first: kind, uid, error, payload (JSON), at."""
        def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute('SELECT kind, uid, error, payload, "at" FROM dead_letters'
                               " WHERE cluster_id = ? ORDER BY id", (cluster,))
            return [{"kind": k, "uid": u, "error": e, "payload": p, "at": from_db_time(a)}
                    for k, u, e, p, a in cur]
        return await self._reader.call(job)

    async def call(self, job: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run `job(connection)` on the writer's (`write`) or the reader's connection, for
        the small tables of other modules (topologies, registered clusters); sqlite3
        errors become `StoreError`s. A writing job opens its own transaction."""
        return await (self._writer if write else self._reader).call(job)

    def bkcmdb_tables(self, *, clock: Callable[[], float]) -> BkCmdbTables:
        """The bk-cmdb pusher's desired state, ledger and tasks here (`bkcmdb_sqlite`)."""
        from .bkcmdb_sqlite import sqlite_tables

        return sqlite_tables(self._reader, self._writer, clock=clock)

    async def ping(self) -> None:
        """Raise a `StoreError` unless the file can be opened and queried."""
        await self._reader.call(lambda conn: conn.execute("SELECT 1").fetchall())

    async def close(self) -> None:
        """Close both connections; the store is unusable afterwards."""
        await self._writer.close()
        await self._reader.close()


register("sqlite", SQLiteStore.open)
