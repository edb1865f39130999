"""The production CMDB: MySQL/MariaDB through an async driver, every kind's table alike.

A batch of one kind is written in one transaction: the conditional upsert of `mysql_sql`
for the whole chunk — in one of its two formulations, "variables" (one upsert per chunk)
or "staged" (a temporary table, an UPDATE JOIN and an INSERT SELECT; MySQL 8), picked per
server by `mysql_conn` — then, for a fenced batch, the check of its cluster's lease under
a shared lock, held to the commit (so many senders of one owner write concurrently while
a takeover, which locks the row exclusively, waits for them; a takeover that came first
is seen, and the transaction is rolled back). The check comes last so that a write stuck
behind someone's row locks holds no lease row meanwhile: the lease renewals of every
cluster of the instance are one statement, and they must never wait for one cluster's
stuck write (a lease lives 30 s; a lock wait may last 50). A refused row (too long, out
of range, ...) fails the whole statement; the batch is then redone row by row in a new
transaction, and each refused row goes to `dead_letters` with the server's error text, its
kind and uid.

Leases: one row per cluster (owner, epoch, expiry on the server's clock), taken and renewed
by one conditional upsert ("variables") or by an insert-if-absent and a conditional UPDATE
whose WHERE is the whole rule ("staged"), given up by expiring it — never by deleting it,
so the highest epoch a cluster has seen survives its release and an older owner cannot
come back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler import (
    ApplyResult,
    ClusterId,
    Fence,
    Fenced,
    ObjectKey,
    Record,
    State,
    StoredIndex,
    Transient,
    WriteGroup,
)
from synchronizer.kinds import Kind, Resource

from . import mysql_sql, rows
from .api import COUNT_CHUNK, Fixed, KindTable, checked_columns, register
from .mysql_conn import DataError, MySQLConnection, classify, describe, error_code

if TYPE_CHECKING:
    from .bkcmdb_tables import BkCmdbTables

CHUNK_ROWS = 1000
"""Rows per `executemany` round trip (a sender's batch is usually 500)."""
CHUNK_CHARS = 1_000_000
"""Characters per round trip, so a chunk of large rows stays under max_allowed_packet."""
_STATES = {state.value: state for state in State}

_ACQUIRE = (
    "INSERT INTO leases (cluster_id, owner, epoch, expires_at)"
    " VALUES (%s, %s, %s, NOW(6) + INTERVAL %s MICROSECOND)"
    " ON DUPLICATE KEY UPDATE"
    " owner = IF((@bk_take := (epoch < VALUES(epoch)"
    " OR (owner = VALUES(owner) AND epoch <= VALUES(epoch))"
    " OR (expires_at <= NOW(6) AND (epoch <= VALUES(epoch) OR VALUES(epoch) = 0)))),"
    " VALUES(owner), owner),"
    " epoch = IF(@bk_take, VALUES(epoch), epoch),"
    " expires_at = IF(@bk_take, VALUES(expires_at), expires_at)"
)
"""The lease rule of `reconciler.Leases.acquire`, decided once against the stored row."""
_CLAIM = (
    "INSERT INTO leases (cluster_id, owner, epoch, expires_at)"
    " VALUES (%s, %s, %s, NOW(6) + INTERVAL %s MICROSECOND)"
    " ON DUPLICATE KEY UPDATE cluster_id = cluster_id"
)
"""Staged leases, step 1: create the lease if the cluster has none (a duplicate key is a
no-op, and only that: unlike IGNORE, a bad value still fails)."""
_TAKE = (
    "UPDATE leases SET owner = %s, epoch = %s, expires_at = NOW(6) + INTERVAL %s MICROSECOND"
    " WHERE cluster_id = %s AND (epoch < %s OR (owner = %s AND epoch <= %s)"
    " OR (expires_at <= NOW(6) AND (epoch <= %s OR %s = 0)))"
)
"""Staged leases, step 2: the lease rule as the WHERE of a single-table UPDATE, decided on
the row before any assignment; every assignment is a parameter, so order cannot matter."""
STAGED_ROUNDS = 3
"""Rounds of the staged UPDATE and INSERT when another session inserts a key of the batch
in between (a duplicate key, which rolls back that statement only). Outside the lease
protocol that does not happen at all; past a few rounds the batch is retried later."""
DUPLICATE_KEY = 1062
_DEAD_LETTER = ("INSERT INTO dead_letters (cluster_id, kind, uid, error, payload, `at`)"
                " VALUES (%s, %s, %s, %s, %s, NOW(6))")


def _chunks(batch: Sequence[tuple[Any, ...]]) -> list[Sequence[tuple[Any, ...]]]:
    """Split rows into round trips of at most CHUNK_ROWS rows and about CHUNK_CHARS chars."""
    out: list[Sequence[tuple[Any, ...]]] = []
    start, chars = 0, 0
    for i, row in enumerate(batch):
        size = 400 + sum(len(v) for v in row if isinstance(v, str))
        if i > start and (i - start >= CHUNK_ROWS or chars + size > CHUNK_CHARS):
            out.append(batch[start:i])
            start, chars = i, 0
        chars += size
    out.append(batch[start:])
    return out


class _Refenced(Fenced):
    """Clusters of a many-cluster transaction found fenced at its end: the transaction is
    rolled back and written again without them (`MySQLStore.apply_groups`)."""

    def __init__(self, fenced: dict[str, Fenced]) -> None:
        super().__init__(next(iter(fenced.values())))
        self.fenced = fenced


class _KindSql:
    """The statements of one kind, generated once."""

    def __init__(self, kind: Kind) -> None:
        self.upsert = mysql_sql.upsert(kind)
        self.upsert_repair = mysql_sql.upsert(kind, repair=True)
        self.logged = mysql_sql.upsert(kind, logged=True)
        self.logged_repair = mysql_sql.upsert(kind, repair=True, logged=True)
        self.index = mysql_sql.load_index(kind, discriminated=False)
        self.index_of = mysql_sql.load_index(kind, discriminated=True)
        self.purge = mysql_sql.purge_tombstones(kind)
        self.stage_create = mysql_sql.stage_create(kind)
        self.stage_clear = mysql_sql.stage_clear(kind)
        self.stage_insert = mysql_sql.stage_insert(kind)
        self.staged_update = mysql_sql.staged_update(kind)
        self.staged_insert = mysql_sql.staged_insert(kind)
        self.staged_written = mysql_sql.staged_written(kind)

    async def create_stage(self, cur: Any) -> None:
        """Create this kind's stage in a new session (see `MySQLConnection.on_new_session`)."""
        await cur.execute(self.stage_create)


def _table(group: WriteGroup) -> KindTable:
    """The kind view a group writes to (the writer hands this store its own views)."""
    store = group.store
    if not isinstance(store, KindTable):
        raise TypeError(f"a group for {group.cluster} does not write to a CMDB table")
    return store


def _where(kind: Kind, fixed: Fixed, cluster: str) -> tuple[str, tuple[Any, ...]]:
    if fixed:
        assert kind.discriminator is not None
        return (f"cluster_id = %s AND `{kind.discriminator}` = %s",
                (cluster, fixed[kind.discriminator]))
    return "cluster_id = %s", (cluster,)


class MySQLStore:
    """Every kind's table, leases and dead letters on MySQL/MariaDB (the production CMDB)."""

    def __init__(self, conn: MySQLConnection) -> None:
        """Prefer `await MySQLStore.open(dsn)`, which connects and creates the tables."""
        self.conn = conn
        self._sql: dict[str, _KindSql] = {}

    @property
    def settings(self) -> Any:
        """The parsed DSN (password hidden in its repr)."""
        return self.conn.settings

    @property
    def server(self) -> str:
        """The server's VERSION()."""
        return self.conn.server

    @property
    def dsn(self) -> str:
        """The DSN without its password, for logs and /status."""
        return self.conn.settings.redacted

    def __repr__(self) -> str:
        """Name the store by its redacted DSN (a repr must not leak the password)."""
        return f"MySQLStore({self.dsn})"

    @classmethod
    async def open(cls, dsn: str, *, migrate: bool = True, pool_size: int | None = None
                   ) -> MySQLStore:
        """Connect and create or migrate the tables (see `MySQLConnection.open`)."""
        if pool_size is None:
            return cls(await MySQLConnection.open(dsn, migrate=migrate))
        return cls(await MySQLConnection.open(dsn, migrate=migrate, pool_size=pool_size))

    def table(self, kind: Kind, resource: Resource | None = None) -> KindTable:
        """The engine's `Store` for `kind` (or one resource of it)."""
        return KindTable(self, kind, resource)

    @property
    def upsert(self) -> str:
        """The formulation of the merge rule in use: "variables" or "staged"."""
        return self.conn.upsert

    def _statements(self, kind: Kind) -> _KindSql:
        sql = self._sql.get(kind.name)
        if sql is None:
            sql = self._sql[kind.name] = _KindSql(kind)
            if self.upsert == "staged":
                self.conn.on_new_session(f"stage {kind.table}", sql.create_stage)
        return sql

    # -- the sink ---------------------------------------------------------------------------

    async def _check_fence(self, cur: Any, cluster: str, fence: Fence | None) -> None:
        if fence is None:
            return
        await cur.execute("SELECT owner, epoch, expires_at > %s FROM leases WHERE cluster_id = %s"
                          " LOCK IN SHARE MODE", (rows.RELEASED, cluster))
        row = await cur.fetchone()
        if row is None or row[0] != fence.owner or row[1] != fence.epoch or not row[2]:
            held = "nobody" if row is None or not row[2] else f"{row[0]} epoch {row[1]}"
            raise Fenced(f"cluster {cluster}: lease held by {held}, not {fence.owner} "
                         f"epoch {fence.epoch}")

    async def apply(self, kind: Kind, fixed: Fixed, cluster: ClusterId,
                    batch: Sequence[Record], fence: Fence | None) -> ApplyResult:
        """Write `batch` under the merge rule in one transaction (fenced when `fence`)."""
        records = sorted(batch, key=lambda r: r.key)
        try:
            built = [rows.row(kind, cluster, r, fixed) for r in records]
        except (TypeError, ValueError):
            return await self._apply_rows(kind, fixed, cluster, records, fence)
        sql = self._statements(kind)
        try:
            async with self.conn.guard(f"apply to {cluster}"), self.conn.transaction() as cur:
                if self.upsert == "staged":
                    written = await self._staged(cur, sql, [
                        (*b, int(r.repair)) for b, r in zip(built, records, strict=True)])
                else:
                    written = await self._variables(cur, sql, built, records)
                await self._check_fence(cur, cluster, fence)  # last: see the docstring
        except DataError:
            return await self._apply_rows(kind, fixed, cluster, records, fence)
        return ApplyResult(written=written, unchanged=len(built) - written)

    async def _fences(self, cur: Any, fences: dict[str, Fence]) -> dict[str, Fenced]:
        """Check many clusters' fences in one statement (shared row locks, sorted ids)."""
        if not fences:
            return {}
        ids = sorted(fences)
        await cur.execute(
            f"SELECT cluster_id, owner, epoch, expires_at > %s FROM leases WHERE cluster_id IN"
            f" ({', '.join(['%s'] * len(ids))}) ORDER BY cluster_id LOCK IN SHARE MODE",
            (rows.RELEASED, *ids))
        held = {c: (o, e, live) for c, o, e, live in await cur.fetchall()}
        out: dict[str, Fenced] = {}
        for cluster in ids:
            fence, row = fences[cluster], held.get(cluster)
            if row is None or row[0] != fence.owner or row[1] != fence.epoch or not row[2]:
                who = "nobody" if row is None or not row[2] else f"{row[0]} epoch {row[1]}"
                out[cluster] = Fenced(f"cluster {cluster}: lease held by {who}, not"
                                      f" {fence.owner} epoch {fence.epoch}")
        return out

    async def apply_groups(self, groups: Sequence[WriteGroup]
                           ) -> list[ApplyResult | BaseException]:
        """Write many (cluster, kind) groups in one transaction, each cluster fenced by its
        own lease: a fenced cluster's groups come back as `Fenced`, the others are applied.

        With the variables formulation the rows of every group bound for one table go in
        one statement (sorted by cluster and key, the order locks are taken in), and each
        row that hits an existing key logs its group in `@bk_log` (`mysql_sql.upsert`,
        logged): one read of the log at the end gives every group's exact `ApplyResult`.
        A quiet fleet's transaction carries a few rows of many clusters, and a statement
        plus a read per group was most of its writing cost. The staged formulation writes
        and counts group by group. A row the server refuses sends every group down the
        single-group path (which isolates and dead-letters the row).
        """
        try:
            built = [(g, sorted(g.records, key=lambda r: r.key)) for g in groups]
            values = [[rows.row(_table(g).kind, g.cluster, r, _table(g).fixed) for r in recs]
                      for g, recs in built]
        except (TypeError, ValueError):
            return await self._apply_each(groups)
        for g in groups:  # before the session is taken: a kind's first use sets it up
            self._statements(_table(g).kind)
        fences = {g.cluster: g.fence for g in groups if g.fence is not None}
        fenced: dict[str, Fenced] = {}
        while True:  # each round leaves out the clusters found fenced by the one before
            try:
                async with self.conn.guard("apply"), self.conn.transaction() as cur:
                    if self.upsert == "staged":
                        out = await self._staged_groups(cur, built, values, fenced)
                    else:
                        out = await self._logged_groups(cur, built, values, fenced)
                    late = await self._fences(  # last, as in `apply`
                        cur, {c: f for c, f in fences.items() if c not in fenced})
                    if late:
                        raise _Refenced(late)  # roll back; write the others again
                    return out
            except _Refenced as exc:
                fenced |= exc.fenced
            except DataError:
                return await self._apply_each(groups)

    async def _logged_groups(self, cur: Any, built: list[tuple[WriteGroup, list[Record]]],
                             values: list[list[tuple[Any, ...]]], fenced: dict[str, Fenced]
                             ) -> list[ApplyResult | BaseException]:
        """The variables formulation of `apply_groups`: one statement per table and
        variant, one read of `@bk_log`."""
        await cur.execute("SET @bk_log = ''")
        by_table: dict[str, list[tuple[str, Record, tuple[Any, ...]]]] = {}
        kinds: dict[str, Kind] = {}
        for (group, records), vals in zip(built, values, strict=True):
            if group.cluster in fenced:
                continue
            kind = _table(group).kind
            kinds[kind.table] = kind
            by_table.setdefault(kind.table, []).extend(
                (group.cluster, r, v) for r, v in zip(records, vals, strict=True))
        for table, entries in by_table.items():
            entries.sort(key=lambda e: (e[0], e[1].key))
            sql = self._statements(kinds[table])
            for statement, repair in ((sql.logged, False), (sql.logged_repair, True)):
                part = [v for _, r, v in entries if r.repair is repair]
                for chunk in _chunks(part) if part else ():
                    await cur.executemany(statement, chunk)
        await cur.execute("SELECT @bk_log")
        (log,) = await cur.fetchone()
        found = mysql_sql.parse_log(log.decode() if isinstance(log, bytes) else log or "")
        out: list[ApplyResult | BaseException] = []
        for group, records in built:
            if group.cluster in fenced:
                out.append(fenced[group.cluster])
                continue
            table = _table(group)
            tag = mysql_sql.group_tag(table.kind, group.cluster, table.fixed)
            existing, changed = found.get(tag, (0, 0))
            written = len(records) - existing + changed
            out.append(ApplyResult(written=written, unchanged=len(records) - written))
        return out

    async def _staged_groups(self, cur: Any, built: list[tuple[WriteGroup, list[Record]]],
                             values: list[list[tuple[Any, ...]]], fenced: dict[str, Fenced]
                             ) -> list[ApplyResult | BaseException]:
        """The staged formulation of `apply_groups`: group by group."""
        out: list[ApplyResult | BaseException] = []
        for (group, records), vals in zip(built, values, strict=True):
            if group.cluster in fenced:
                out.append(fenced[group.cluster])
                continue
            sql = self._statements(_table(group).kind)
            written = await self._staged(cur, sql, [
                (*b, int(r.repair)) for b, r in zip(vals, records, strict=True)])
            out.append(ApplyResult(written=written, unchanged=len(vals) - written))
        return out

    async def _apply_each(self, groups: Sequence[WriteGroup]
                          ) -> list[ApplyResult | BaseException]:
        out: list[ApplyResult | BaseException] = []
        for g in groups:
            try:
                out.append(await g.store.apply(g.cluster, g.records, fence=g.fence))
            except Fenced as exc:
                out.append(exc)
        return out
    @staticmethod
    async def _variables(cur: Any, sql: _KindSql, built: Sequence[tuple[Any, ...]],
                         records: Sequence[Record]) -> int:
        """The rule as one upsert per chunk, counted by session variables; rows written."""
        await cur.execute("SET @bk_dup = 0, @bk_chg = 0")
        for statement, repair in ((sql.upsert, False), (sql.upsert_repair, True)):
            group = [b for b, r in zip(built, records, strict=True) if r.repair is repair]
            if group:
                for chunk in _chunks(group):
                    await cur.executemany(statement, chunk)
        await cur.execute("SELECT @bk_dup, @bk_chg")
        existing, changed = await cur.fetchone()
        return len(built) - int(existing) + int(changed)

    async def _staged(self, cur: Any, sql: _KindSql, staged: Sequence[tuple[Any, ...]]) -> int:
        """The rule through the session's stage (`mysql_sql`, "Staged"); rows written.

        `staged` rows are the table's columns then the repair flag. A duplicate key from
        the INSERT means another session inserted one of these keys since the UPDATE
        looked: that statement alone is rolled back, and UPDATE and INSERT run again (the
        UPDATE's marks are idempotent, so nothing is counted twice). The marks are counted
        only if the UPDATE changed any row: a no-change re-sync saves that round trip.
        """
        await cur.execute(sql.stage_clear)
        for chunk in _chunks(staged):
            await cur.executemany(sql.stage_insert, chunk)
        touched = 0
        for _ in range(STAGED_ROUNDS):
            await cur.execute(sql.staged_update)
            touched += int(cur.rowcount)
            try:
                await cur.execute(sql.staged_insert)
            except self.conn.error as exc:
                if error_code(exc) != DUPLICATE_KEY:
                    raise
                continue
            inserted = int(cur.rowcount)
            if not touched:  # a row the UPDATE wrote changes its mark, so none was written
                return inserted
            await cur.execute(sql.staged_written)
            (marked,) = await cur.fetchone()
            return int(marked) + inserted
        raise Transient(f"keys of this batch were inserted by another session"
                        f" {STAGED_ROUNDS} times in a row")

    async def _apply_rows(self, kind: Kind, fixed: Fixed, cluster: str,
                          records: Sequence[Record], fence: Fence | None) -> ApplyResult:
        """One statement per row, one transaction; affected rows 1/2 = written, 0 = unchanged."""
        sql = self._statements(kind)
        written = 0
        rejected: list[tuple[ObjectKey, str]] = []
        async with self.conn.guard(f"apply to {cluster}"), self.conn.transaction() as cur:
            for record in records:
                try:
                    row = rows.row(kind, cluster, record, fixed)
                    if self.upsert == "staged":
                        written += await self._staged(cur, sql, [(*row, int(record.repair))])
                    else:
                        await cur.execute(sql.upsert_repair if record.repair else sql.upsert,
                                          row)
                        written += cur.rowcount > 0
                except Exception as exc:
                    if not (classify(exc, self.conn.error) == "data"
                            or isinstance(exc, TypeError | ValueError)):
                        raise
                    error = rows.clean_text(describe(exc), rows.ERROR_LIMIT)
                    rejected.append((record.key, error))
                    await cur.execute(_DEAD_LETTER, (
                        rows.clean_text(cluster, rows.KEY_LIMIT), kind.name,
                        rows.clean_text(record.key, 255), error,
                        rows.dead_letter_payload(record)))
            await self._check_fence(cur, cluster, fence)  # last, as in `apply`
        return ApplyResult(written=written, unchanged=len(records) - written - len(rejected),
                           rejected=tuple(rejected))

    async def reset_versions(self, kind: Kind, fixed: Fixed, cluster: ClusterId,
                             fence: Fence | None) -> int:
        """Every row of the view to version 0, Active checksums emptied; fenced; one
        transaction (see `reconciler.Store.reset_versions`)."""
        where, args = _where(kind, fixed, cluster)
        async with (self.conn.guard(f"reset versions of {cluster}"),
                    self.conn.transaction() as cur):
            await cur.execute(
                f"UPDATE `{kind.table}` SET resource_version = 0, checksum = CASE WHEN"
                f" state = 'Active' THEN '' ELSE checksum END WHERE {where}", args)
            touched = int(cur.rowcount)
            await self._check_fence(cur, cluster, fence)  # last, as in `apply`
            return touched

    async def load_index(self, kind: Kind, fixed: Fixed,
                         cluster: ClusterId) -> StoredIndex:
        """Version and checksum ('' if edited) of the Active rows of the view."""
        sql = self._statements(kind)
        if fixed:
            assert kind.discriminator is not None
            found = await self.conn.query(f"load index of {cluster}", sql.index_of,
                                          (cluster, fixed[kind.discriminator]))
        else:
            found = await self.conn.query(f"load index of {cluster}", sql.index, (cluster,))
        return StoredIndex.of_rows(found)

    async def count_active(self, kind: Kind, fixed: Fixed, clusters: Sequence[ClusterId]
                           ) -> dict[ClusterId, int]:
        """Active rows of the view per cluster (index range counts, tombstones not
        touched), a statement per `COUNT_CHUNK` clusters; a cluster with none is 0."""
        out = dict.fromkeys(clusters, 0)
        extra: tuple[Any, ...] = (fixed[kind.discriminator],) if fixed else ()
        for at in range(0, len(clusters), COUNT_CHUNK):
            chunk = clusters[at:at + COUNT_CHUNK]
            statement = mysql_sql.count_active(kind, len(chunk), discriminated=bool(fixed))
            for cluster, n in await self.conn.query(f"count {kind.table}", statement,
                                                     (*chunk, *extra)):
                out[ClusterId(cluster)] = int(n)
        return out

    async def count_by_state(self, kind: Kind, cluster: ClusterId) -> dict[str, int]:
        """Rows of `cluster` per state, both states always present."""
        counts = dict.fromkeys(_STATES, 0)
        for state, n in await self.conn.query(
                f"count {cluster}", f"SELECT state, COUNT(*) FROM `{kind.table}`"
                " WHERE cluster_id = %s GROUP BY state", (cluster,)):
            counts[state] = int(n)
        return counts

    async def rows(self, kind: Kind, fixed: Fixed, cluster: ClusterId) -> list[dict[str, Any]]:
        """Every column of every row of the view, by uid; query_at as aware UTC datetime."""
        names = rows.column_names(kind)
        where, args = _where(kind, fixed, cluster)
        found = await self.conn.query(
            f"rows of {cluster}", f"SELECT {', '.join(f'`{c}`' for c in names)}"
            f" FROM `{kind.table}` WHERE {where} ORDER BY uid", args)
        out = [dict(zip(names, row, strict=True)) for row in found]
        for row in out:
            row["query_at"] = rows.from_db_time(row["query_at"])
        return out

    async def group_active(self, kind: Kind, cluster: ClusterId, columns: Sequence[str],
                           limit: int) -> list[tuple[Any, ...]]:
        """The largest groups of the cluster's Active rows by `columns`, with counts."""
        names = ", ".join(f"`{c}`" for c in checked_columns(kind, columns))
        found = await self.conn.query(
            f"groups of {cluster}", f"SELECT {names}, COUNT(*) AS n FROM `{kind.table}`"
            f" WHERE cluster_id = %s AND state = 'Active' GROUP BY {names}"
            f" ORDER BY n DESC, {names} LIMIT %s", (cluster, int(limit)))
        return [tuple(row) for row in found]

    async def purge_tombstones(self, kind: Kind, cluster: ClusterId, before: datetime,
                               limit: int) -> int:
        """Delete up to `limit` tombstones of `cluster` observed before `before`."""
        return await self.conn.execute(f"purge {cluster}", self._statements(kind).purge,
                                       (cluster, rows.db_time(before), limit))

    # -- leases and the rest ------------------------------------------------------------------

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """Take or renew `cluster`'s lease for `ttl` seconds of the server's clock (one
        request of `acquire_many`)."""
        (held,) = await self.acquire_many([(cluster, fence)], ttl)
        return held

    async def acquire_many(self, requests: Sequence[tuple[ClusterId, Fence]],
                           ttl: float) -> list[bool]:
        """`acquire` for many clusters in one transaction; rows are locked in cluster
        order, as the writer's fence check locks them.

        One bulk conditional upsert decides each lease row by row (`_ACQUIRE`), or on the
        staged formulation a claim of an absent lease and a conditional UPDATE per cluster
        (`_CLAIM`, `_TAKE`); the rows read back in the same transaction say who holds each.
        """
        if not requests:
            return []
        micros = int(max(ttl, 0.0) * 1_000_000)
        ordered = sorted(requests, key=lambda r: r[0])
        clusters = sorted({c for c, _ in requests})
        what = f"lease {clusters[0]}" if len(clusters) == 1 else \
            f"leases of {len(clusters)} clusters"
        async with self.conn.guard(what), self.conn.transaction() as cur:
            if self.upsert == "staged":
                for cluster, fence in ordered:
                    await cur.execute(_CLAIM, (cluster, fence.owner, fence.epoch, micros))
                    if cur.rowcount != 1:
                        epoch = fence.epoch
                        await cur.execute(_TAKE, (fence.owner, epoch, micros, cluster, epoch,
                                                  fence.owner, epoch, epoch, epoch))
            else:
                await cur.executemany(_ACQUIRE, [(c, f.owner, f.epoch, micros)
                                                 for c, f in ordered])
            await cur.execute(
                f"SELECT cluster_id, owner, epoch FROM leases WHERE cluster_id IN"
                f" ({', '.join(['%s'] * len(clusters))})", tuple(clusters))
            held = {c: (o, e) for c, o, e in await cur.fetchall()}
        return [held.get(c) == (f.owner, f.epoch) for c, f in requests]

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """Expire the lease if `fence` holds it: a successor need not wait; the epoch stays."""
        await self.conn.execute(
            f"release {cluster}", "UPDATE leases SET expires_at = %s WHERE cluster_id = %s"
            " AND owner = %s AND epoch = %s", (rows.RELEASED, cluster, fence.owner, fence.epoch))

    async def lease(self, cluster: ClusterId) -> dict[str, Any] | None:
        """The lease row of `cluster` (owner, epoch, expires_at), expired or not."""
        found = await self.conn.query(f"lease of {cluster}", "SELECT owner, epoch, expires_at"
                                      " FROM leases WHERE cluster_id = %s", (cluster,))
        if not found:
            return None
        owner, epoch, expires = found[0]
        return {"owner": owner, "epoch": epoch, "expires_at": rows.from_db_time(expires)}

    async def dead_letters(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """Refused rows of `cluster`, oldest first: kind, uid, error, payload (JSON), at."""
        found = await self.conn.query(
            f"dead letters of {cluster}", "SELECT kind, uid, error, payload, `at` FROM"
            " dead_letters WHERE cluster_id = %s ORDER BY id", (cluster,))
        return [{"kind": k, "uid": u, "error": e, "payload": p, "at": rows.from_db_time(a)}
                for k, u, e, p, a in found]

    def bkcmdb_tables(self, *, clock: Callable[[], float]) -> BkCmdbTables:
        """The bk-cmdb pusher's desired state, ledger and tasks here (`bkcmdb_mysql`)."""
        from .bkcmdb_mysql import mysql_tables

        return mysql_tables(self.conn, clock=clock)

    async def ping(self) -> None:
        """Raise `Transient` (or `StoreError`) unless the server answers a query."""
        await self.conn.query("ping", "SELECT 1")

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to come back."""
        await self.conn.close()


register("mysql", MySQLStore.open)
