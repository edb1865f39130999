"""The production CMDB: MySQL/MariaDB through an async driver, with a connection pool.

The merge rule is one conditional `INSERT ... ON DUPLICATE KEY UPDATE` statement, sent for
a whole chunk of rows with `executemany`: with asyncmy on MariaDB that is one
COM_STMT_BULK_EXECUTE round trip of binary rows (no client-side escaping); elsewhere the
driver rewrites it into multi-row text statements.

MySQL evaluates the UPDATE assignments left to right, each seeing the columns already
assigned, so a per-column guard such as `IF(VALUES(checksum) <> checksum, ...)` breaks as
soon as `checksum` itself has been assigned. The first assignment therefore evaluates the
whole decision once, against the stored row, into the session variable `@bk_act`
(0 older or equal: nothing; 1 newer, same checksum: version and query_at only; 2 newer live
change: every column; 3 newer delete: state, checksum, version, query_at), and every later
assignment only reads it. Two more session counters (`@bk_dup`, `@bk_chg`) count the rows
that hit an existing key and the rows that changed, so `ApplyResult` is exact without
relying on the driver's affected-rows flags. Tested on MariaDB 10.11; MySQL 8 accepts the
statement but deprecates `VALUES()` and assignments in expressions (warnings only).

Sessions run with time_zone UTC, READ COMMITTED (fewer gap locks, so fewer deadlocks between
concurrent upserts) and strict mode enabled if the server's default lacked it: a too-long
value is an error for that row, never a silent truncation. A fenced batch takes a shared
lock on its cluster's lease row in the same transaction, so many senders of one owner
write concurrently while a takeover (`acquire`, an exclusive row lock) waits for them.

The driver is asyncmy by default (see docs/benchmarks.md, "CMDB drivers"); aiomysql stays
selectable with `mysql+aiomysql://` because both speak the same pymysql-style API.
Why not one multi-row prepared statement: the server keeps about 4 MB per prepared
500-row statement, per connection and per distinct row count; the bulk protocol needs
one small statement and is as fast.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from reconciler import (
    ApplyResult,
    ClusterId,
    Fence,
    Fenced,
    ObjectKey,
    Record,
    Stamp,
    State,
    StoreError,
    Transient,
)
from synchronizer.projection import COLUMNS

from . import schema

DEFAULT_DRIVER = "asyncmy"
CHUNK_ROWS = 1000
"""Rows per `executemany` round trip (a sender's batch is usually 500)."""
CHUNK_CHARS = 1_000_000
"""Characters per round trip, so a chunk of large rows stays under max_allowed_packet."""
_STATES = {state.value: state for state in State}
_DRIVER_ERRORS = {"asyncmy": ("asyncmy.errors", "MySQLError"),
                  "aiomysql": ("pymysql.err", "MySQLError")}

# Server error codes. Transient: the same statement may succeed later (deadlock, lock wait
# timeout, connection lost or killed, server shutting down, read-only, too many
# connections, disk full). Data: this row can never be written as it is.
_TRANSIENT = frozenset({1021, 1040, 1053, 1114, 1152, 1158, 1159, 1160, 1161, 1203, 1205,
                        1213, 1290, 1317, 1637, 1792, 1836, 1927, 1969, 4031})
_DATA = frozenset({1048, 1062, 1264, 1265, 1292, 1300, 1366, 1367, 1406, 1411, 1451, 1452,
                   1690, 3140, 3819, 4025})


class _DataError(StoreError):
    """The server refused a row's values: isolate the row, do not retry the batch as is."""


def _code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _kind(exc: BaseException, driver_error: type[BaseException]) -> str:
    """Classify an exception as "data", "transient" or "other"."""
    if isinstance(exc, UnicodeEncodeError):
        return "data"
    if isinstance(exc, driver_error):
        code = _code(exc)
        if code in _DATA:
            return "data"
        # 2xxx are client-side connection errors; InterfaceError(0) is "not connected".
        if code in _TRANSIENT or 2000 <= code < 3000:
            return "transient"
        if code == 0 and type(exc).__name__ == "InterfaceError":
            return "transient"
        return "other"
    if isinstance(exc, OSError | EOFError | ConnectionError):
        return "transient"
    return "other"


def _describe(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"MySQL error {args[0]}: {args[1]}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class MySQLSettings:
    """A parsed DSN. `repr` and `redacted` never show the password."""

    driver: str
    host: str
    port: int
    user: str
    database: str
    password: str = field(default="", repr=False)
    pool_size: int = 10
    connect_timeout: float = 10.0
    timeout: float = 60.0

    @property
    def redacted(self) -> str:
        """The DSN with the password replaced, for logs and errors."""
        secret = ":***" if self.password else ""
        return f"mysql+{self.driver}://{self.user}{secret}@{self.host}:{self.port}/{self.database}"


_PARAMS = {"pool_size": int, "connect_timeout": float, "timeout": float}


def parse_dsn(dsn: str) -> MySQLSettings:
    """Parse `mysql[+driver]://user:pass@host:port/db?pool_size=&connect_timeout=&timeout=`.

    Raise a one-line ValueError naming the problem; it never repeats the DSN (a password).
    """
    parts = urlsplit(dsn)
    scheme, _, driver = parts.scheme.partition("+")
    if scheme != "mysql" or (driver and driver not in _DRIVER_ERRORS):
        raise ValueError(f"mysql DSN scheme must be mysql://, mysql+asyncmy:// or "
                         f"mysql+aiomysql://, not {parts.scheme}://")
    try:
        port = parts.port or 3306
    except ValueError:
        raise ValueError("mysql DSN has an invalid port") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError("mysql DSN names no database (mysql://user:pass@host:port/DATABASE)")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMS:
            raise ValueError(f"mysql DSN parameter {key!r} is unknown; known: "
                             f"{', '.join(sorted(_PARAMS))}")
        try:
            options[key] = _PARAMS[key](value)
        except ValueError:
            raise ValueError(f"mysql DSN parameter {key} must be a number") from None
        if options[key] <= 0:
            raise ValueError(f"mysql DSN parameter {key} must be positive")
    return MySQLSettings(
        driver=driver or DEFAULT_DRIVER, host=parts.hostname or "127.0.0.1", port=port,
        user=unquote(parts.username or "root"), password=unquote(parts.password or ""),
        database=database, **options,
    )


_ACT = ("IF(VALUES(resource_version) <= resource_version, 0,"
        " IF(VALUES(checksum) = checksum, 1, IF(VALUES(state) = 'Active', 2, 3)))")
_SAME = "VALUES(checksum) = checksum AND VALUES(state) = state"
_ACT_REPAIR = (f"IF(VALUES(resource_version) < resource_version OR (VALUES(resource_version)"
               f" = resource_version AND {_SAME}), 0,"
               f" IF({_SAME}, 1, IF(VALUES(state) = 'Active', 2, 3)))")
"""For full-sync records (`Record.repair`): also act at an equal version when content or
state differ, which repairs rows edited out of band."""


def _upsert_sql(*, repair: bool = False) -> str:
    """The conditional upsert of one row (the decision is made once, see the module)."""
    first, second, *rest = COLUMNS
    act = _ACT_REPAIR if repair else _ACT
    assignments = [
        f"`{first}` = IF((@bk_act := {act}) = 2, VALUES(`{first}`), `{first}`)",
        f"`{second}` = IF((@bk_dup := COALESCE(@bk_dup, 0) + 1) > 0"
        f" AND (@bk_chg := COALESCE(@bk_chg, 0) + (@bk_act > 0)) >= 0"
        f" AND @bk_act = 2, VALUES(`{second}`), `{second}`)",
        *(f"`{c}` = IF(@bk_act = 2, VALUES(`{c}`), `{c}`)" for c in rest),
        "state = IF(@bk_act >= 2, VALUES(state), state)",
        "checksum = IF(@bk_act >= 2, VALUES(checksum), checksum)",
        "resource_version = IF(@bk_act >= 1, VALUES(resource_version), resource_version)",
        "query_at = IF(@bk_act >= 1, VALUES(query_at), query_at)",
    ]
    values = ", ".join(["%s"] * len(schema.POD_COLUMNS))
    columns = ", ".join(f"`{c}`" for c in schema.POD_COLUMNS)
    return (f"INSERT INTO pods ({columns}) VALUES ({values})"
            f" ON DUPLICATE KEY UPDATE {', '.join(assignments)}")


_UPSERT = _upsert_sql()
_UPSERT_REPAIR = _upsert_sql(repair=True)


_ACQUIRE = (
    "INSERT INTO leases (cluster_id, owner, epoch, expires_at)"
    " VALUES (%s, %s, %s, NOW(6) + INTERVAL %s MICROSECOND)"
    " ON DUPLICATE KEY UPDATE"
    " owner = IF((@bk_take := (expires_at <= NOW(6) OR epoch < VALUES(epoch)"
    " OR (owner = VALUES(owner) AND epoch <= VALUES(epoch)))), VALUES(owner), owner),"
    " epoch = IF(@bk_take, VALUES(epoch), epoch),"
    " expires_at = IF(@bk_take, VALUES(expires_at), expires_at)"
)
_DEAD_LETTER = ("INSERT INTO dead_letters (cluster_id, uid, error, payload, `at`)"
                " VALUES (%s, %s, %s, %s, NOW(6))")


def _chunks(rows: Sequence[tuple[Any, ...]]) -> list[Sequence[tuple[Any, ...]]]:
    """Split rows into round trips of at most CHUNK_ROWS rows and about CHUNK_CHARS chars."""
    out: list[Sequence[tuple[Any, ...]]] = []
    start, chars = 0, 0
    for i, row in enumerate(rows):
        size = 400 + sum(len(v) for v in row if isinstance(v, str))
        if i > start and (i - start >= CHUNK_ROWS or chars + size > CHUNK_CHARS):
            out.append(rows[start:i])
            start, chars = i, 0
        chars += size
    out.append(rows[start:])
    return out


class MySQLStore:
    """`reconciler.Store` and `reconciler.Leases` on MySQL/MariaDB (the production CMDB)."""

    def __init__(self, settings: MySQLSettings, pool: Any, server: str) -> None:
        """Prefer `await MySQLStore.open(dsn)`, which connects and creates the tables."""
        self.settings = settings
        self.server = server
        self._pool = pool
        module, name = _DRIVER_ERRORS[settings.driver]
        self._error: type[BaseException] = getattr(importlib.import_module(module), name)

    @property
    def dsn(self) -> str:
        """The DSN without its password, for logs and /status."""
        return self.settings.redacted

    def __repr__(self) -> str:
        """Name the store by its redacted DSN (a repr must not leak the password)."""
        return f"MySQLStore({self.dsn})"

    @classmethod
    async def open(cls, dsn: str, *, migrate: bool = True) -> MySQLStore:
        """Connect, create or migrate the tables (unless `migrate` is False: readers such
        as `verify` must leave no trace), and start the pool.

        Raise `ValueError` for a bad DSN, `Transient` when the server cannot be reached.
        """
        settings = parse_dsn(dsn)
        driver = importlib.import_module(settings.driver)
        module, name = _DRIVER_ERRORS[settings.driver]
        error = getattr(importlib.import_module(module), name)
        common = dict(host=settings.host, port=settings.port, user=settings.user,
                      password=settings.password, db=settings.database, charset="utf8mb4",
                      autocommit=True, connect_timeout=settings.connect_timeout)
        try:
            async with asyncio.timeout(settings.timeout):
                conn = await driver.connect(**common)
                try:
                    server, init = await _bootstrap(conn, migrate=migrate)
                finally:
                    conn.close()
                pool = await _create_pool(driver, settings, init, common)
        except Exception as exc:
            where = f"{settings.host}:{settings.port}/{settings.database}"
            if isinstance(exc, TimeoutError) or _kind(exc, error) == "transient":
                raise Transient(f"CMDB {where} unreachable: {_describe(exc)}") from None
            raise StoreError(f"CMDB {where}: {_describe(exc)}") from None
        return cls(settings, pool, server)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A cursor inside BEGIN ... COMMIT; on any failure the connection is discarded.

        Discarding (not rolling back) is deliberate: after a cancellation or a lost
        connection the protocol state is unknown, and failures are rare enough that a
        reconnect costs nothing measurable.
        """
        async with self._pool.acquire() as conn:
            try:
                await conn.begin()
                async with conn.cursor() as cur:
                    yield cur
                await conn.commit()
            except BaseException:
                conn.close()
                raise

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Bound an operation by the DSN's timeout and map driver errors to the engine's."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                yield
        except StoreError:
            raise
        except TimeoutError:
            raise Transient(f"CMDB {what}: no answer within {self.settings.timeout:g} s") from None
        except Exception as exc:
            kind = _kind(exc, self._error)
            if kind == "data":
                raise _DataError(_describe(exc)) from exc
            if kind == "transient":
                raise Transient(f"CMDB {what}: {_describe(exc)}") from exc
            raise StoreError(f"CMDB {what}: {_describe(exc)}") from exc

    async def _check_fence(self, cur: Any, cluster: str, fence: Fence | None) -> None:
        if fence is None:
            return
        await cur.execute("SELECT owner, epoch FROM leases WHERE cluster_id = %s"
                          " LOCK IN SHARE MODE", (cluster,))
        row = await cur.fetchone()
        if row is None or row[0] != fence.owner or row[1] != fence.epoch:
            held = "nobody" if row is None else f"{row[0]} epoch {row[1]}"
            raise Fenced(f"cluster {cluster}: lease held by {held}, not {fence.owner} "
                         f"epoch {fence.epoch}")

    async def apply(self, cluster: ClusterId, batch: Sequence[Record], *,
                    fence: Fence | None = None) -> ApplyResult:
        """Write `batch` under the merge rule in one transaction (fenced when `fence`).

        A refused row (too long, out of range, ...) fails the whole statement; the batch
        is then redone row by row in a new transaction, refused rows go to dead_letters
        with the server's error text and come back in `ApplyResult.rejected`.
        """
        if not batch:
            return ApplyResult()
        records = sorted(batch, key=lambda r: r.key)
        try:
            rows = [schema.pod_row(cluster, r) for r in records]
        except (TypeError, ValueError):
            return await self._apply_rows(cluster, records, fence)
        try:
            async with self._guard(f"apply to {cluster}"), self._transaction() as cur:
                await self._check_fence(cur, cluster, fence)
                await cur.execute("SET @bk_dup = 0, @bk_chg = 0")
                for statement, repair in ((_UPSERT, False), (_UPSERT_REPAIR, True)):
                    group = [row for row, r in zip(rows, records, strict=True)
                             if r.repair is repair]
                    for chunk in _chunks(group):
                        await cur.executemany(statement, chunk)
                await cur.execute("SELECT @bk_dup, @bk_chg")
                existing, changed = await cur.fetchone()
        except _DataError:
            return await self._apply_rows(cluster, records, fence)
        written = len(rows) - int(existing) + int(changed)
        return ApplyResult(written=written, unchanged=len(rows) - written)

    async def _apply_rows(self, cluster: str, records: Sequence[Record],
                          fence: Fence | None) -> ApplyResult:
        """One statement per row, one transaction; affected rows 1/2 = written, 0 = unchanged."""
        written = 0
        rejected: list[tuple[ObjectKey, str]] = []
        async with self._guard(f"apply to {cluster}"), self._transaction() as cur:
            await self._check_fence(cur, cluster, fence)
            await cur.execute("SET @bk_dup = 0, @bk_chg = 0")
            for record in records:
                try:
                    await cur.execute(_UPSERT_REPAIR if record.repair else _UPSERT,
                                      schema.pod_row(cluster, record))
                    written += cur.rowcount > 0
                except Exception as exc:
                    if not (_kind(exc, self._error) == "data"
                            or isinstance(exc, TypeError | ValueError)):
                        raise
                    error = schema.clean_text(_describe(exc), schema.ERROR_LIMIT)
                    rejected.append((record.key, error))
                    await cur.execute(_DEAD_LETTER, (
                        schema.clean_text(cluster, schema.KEY_LIMIT),
                        schema.clean_text(record.key, 255), error,
                        schema.dead_letter_payload(record)))
        return ApplyResult(written=written, unchanged=len(records) - written - len(rejected),
                           rejected=tuple(rejected))

    async def _query(self, what: str, sql: str, args: Sequence[Any]) -> Sequence[Any]:
        async with self._guard(what), self._transaction() as cur:
            await cur.execute(sql, args)
            return await cur.fetchall()

    async def load_index(self, cluster: ClusterId) -> dict[ObjectKey, Stamp]:
        """Version, checksum and state of every row of `cluster` (the full-sync diff's B)."""
        rows = await self._query(
            f"load index of {cluster}",
            "SELECT uid, resource_version, checksum, state FROM pods WHERE cluster_id = %s",
            (cluster,))
        states = _STATES
        return {uid: Stamp(version, checksum, states[state])
                for uid, version, checksum, state in rows}

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """Take or renew `cluster`'s lease for `ttl` seconds of the server's clock.

        One conditional upsert decides (free, expired, ours with an epoch not lower, or a
        lower stored epoch); the row read back in the same transaction says who holds it.
        """
        micros = int(max(ttl, 0.0) * 1_000_000)
        async with self._guard(f"lease {cluster}"), self._transaction() as cur:
            await cur.execute(_ACQUIRE, (cluster, fence.owner, fence.epoch, micros))
            await cur.execute("SELECT owner, epoch FROM leases WHERE cluster_id = %s", (cluster,))
            row = await cur.fetchone()
        return row is not None and (row[0], row[1]) == (fence.owner, fence.epoch)

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """Drop the lease if `fence` holds it: a successor need not wait, our writes fence."""
        async with self._guard(f"release {cluster}"), self._transaction() as cur:
            await cur.execute("DELETE FROM leases WHERE cluster_id = %s AND owner = %s"
                              " AND epoch = %s", (cluster, fence.owner, fence.epoch))

    async def lease(self, cluster: ClusterId) -> dict[str, Any] | None:
        """The lease row of `cluster` (owner, epoch, expires_at), expired or not; None if free."""
        rows = await self._query(f"lease of {cluster}", "SELECT owner, epoch, expires_at"
                                 " FROM leases WHERE cluster_id = %s", (cluster,))
        if not rows:
            return None
        owner, epoch, expires = rows[0]
        return {"owner": owner, "epoch": epoch, "expires_at": schema.from_db_time(expires)}

    async def count_by_state(self, cluster: ClusterId) -> dict[str, int]:
        """Rows of `cluster` per state, both states always present (for /status)."""
        counts = dict.fromkeys(_STATES, 0)
        for state, n in await self._query(
                f"count {cluster}", "SELECT state, COUNT(*) FROM pods WHERE cluster_id = %s"
                " GROUP BY state", (cluster,)):
            counts[state] = int(n)
        return counts

    async def rows(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """Every column of every row of `cluster`, by uid; query_at as aware UTC datetime."""
        columns = ", ".join(f"`{c}`" for c in schema.POD_COLUMNS)
        out = [dict(zip(schema.POD_COLUMNS, row, strict=True)) for row in await self._query(
            f"rows of {cluster}",
            f"SELECT {columns} FROM pods WHERE cluster_id = %s ORDER BY uid", (cluster,))]
        for row in out:
            row["query_at"] = schema.from_db_time(row["query_at"])
        return out

    async def dead_letters(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """Refused rows of `cluster`, oldest first: uid, error, payload (JSON), at."""
        rows = await self._query(f"dead letters of {cluster}", "SELECT uid, error, payload, `at`"
                                 " FROM dead_letters WHERE cluster_id = %s ORDER BY id", (cluster,))
        return [{"uid": u, "error": e, "payload": p, "at": schema.from_db_time(a)}
                for u, e, p, a in rows]

    async def ping(self) -> None:
        """Raise `Transient` (or `StoreError`) unless the server answers a query."""
        await self._query("ping", "SELECT 1", ())

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to come back."""
        self._pool.close()
        await self._pool.wait_closed()


IDLE_TRANSACTION_TIMEOUT = 5
"""Seconds MariaDB lets a transaction of ours sit idle before ending it (see `_bootstrap`)."""

STATEMENT_CACHE = 16
"""Prepared statements asyncmy keeps per connection; the store issues about ten distinct."""


async def _create_pool(driver: Any, settings: MySQLSettings, init: str,
                       common: dict[str, Any]) -> Any:
    """Start the pool; with asyncmy, use the binary protocol for parameterised statements.

    asyncmy's statement cache turns every parameterised `execute` into a cached server-side
    prepared statement and, on MariaDB, `executemany` into one COM_STMT_BULK_EXECUTE:
    values travel in binary, so the client neither escapes nor quotes them. On 1.3 KB rows
    that is several times less client CPU than the text protocol (docs/benchmarks.md),
    which matters in a process that also parses every Pod event. An asyncmy without the
    option falls back to the text protocol.
    """
    options = dict(minsize=1, maxsize=settings.pool_size, pool_recycle=3600,
                   init_command=init, **common)
    if settings.driver == "asyncmy":
        try:
            return await driver.create_pool(stmt_cache_size=STATEMENT_CACHE, **options)
        except TypeError:
            pass
    return await driver.create_pool(**options)


async def _bootstrap(conn: Any, *, migrate: bool = True) -> tuple[str, str]:
    """Read the server's version, build the session set-up, and migrate the schema.

    Returns (server version, init command for pooled sessions). The isolation variable is
    `tx_isolation` on MariaDB before 11.1 and `transaction_isolation` on MySQL 8.
    """
    async with conn.cursor() as cur:
        await cur.execute("SELECT VERSION()")
        (server,) = await cur.fetchone()
        await cur.execute("SHOW VARIABLES LIKE 'transaction_isolation'")
        isolation = "transaction_isolation" if await cur.fetchall() else "tx_isolation"
        # A write holds a shared lock on its cluster's lease row until COMMIT; an owner
        # paused inside one (SIGSTOP, a VM freeze) would block its successor's takeover
        # for as long as it stays paused. MariaDB can end such a transaction: ours never
        # sit idle between statements, so a few seconds only ever catches a frozen one.
        await cur.execute("SHOW VARIABLES LIKE 'idle_transaction_timeout'")
        idle = (f" SESSION idle_transaction_timeout = {IDLE_TRANSACTION_TIMEOUT},"
                if await cur.fetchall() else "")
        init = (
            f"SET SESSION time_zone = '+00:00',{idle}"
            f" SESSION {isolation} = 'READ-COMMITTED',"
            " SESSION sql_mode = IF(FIND_IN_SET('STRICT_TRANS_TABLES', @@SESSION.sql_mode)"
            " OR FIND_IN_SET('STRICT_ALL_TABLES', @@SESSION.sql_mode), @@SESSION.sql_mode,"
            " CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_TRANS_TABLES'))"
        )
        await cur.execute(init)
        if migrate:
            await schema.migrate_mysql(cur)
    return str(server), init
