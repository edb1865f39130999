"""Connections to MySQL/MariaDB: the pool, transactions, and driver errors in engine terms.

Sessions run with time_zone UTC, READ COMMITTED (fewer gap locks, so fewer deadlocks between
concurrent upserts) and strict mode enabled if the server's default lacked it: a too-long
value is an error for that row, never a silent truncation.

The driver is asyncmy by default (see docs/benchmarks.md, "CMDB drivers"); aiomysql stays
selectable with `mysql+aiomysql://` because both speak the same pymysql-style API. Errors
are classified once here: "transient" (the same statement may succeed later: deadlock,
lock wait timeout, connection lost or killed, server shutting down, read-only, too many
connections, disk full), "data" (this row can never be written as it is), or other.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from reconciler import StoreError, Transient

from . import schema
from .dsn import MySQLSettings, parse_mysql

_DRIVER_ERRORS = {"asyncmy": ("asyncmy.errors", "MySQLError"),
                  "aiomysql": ("pymysql.err", "MySQLError")}
_TRANSIENT = frozenset({1021, 1040, 1053, 1114, 1152, 1158, 1159, 1160, 1161, 1203, 1205,
                        1213, 1290, 1317, 1637, 1792, 1836, 1927, 1969, 4031})
_DATA = frozenset({1048, 1062, 1264, 1265, 1292, 1300, 1366, 1367, 1406, 1411, 1451, 1452,
                   1690, 3140, 3819, 4025})

IDLE_TRANSACTION_TIMEOUT = 5
"""Seconds MariaDB lets a transaction of ours sit idle before ending it (see `_bootstrap`)."""
DEFAULT_POOL = 10
"""Connections when neither the DSN nor the service asks for another number."""
STATEMENT_CACHE = 32
"""Prepared statements asyncmy keeps per connection: a few per kind, four kinds."""


class DataError(StoreError):
    """The server refused a row's values: isolate the row, do not retry the batch as is."""


def _code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def classify(exc: BaseException, driver_error: type[BaseException]) -> str:
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


def describe(exc: BaseException) -> str:
    """One line: the server's code and message, or the exception's type and text."""
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"MySQL error {args[0]}: {args[1]}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class MySQLConnection:
    """A pool of sessions to one database, with transactions and error mapping."""

    def __init__(self, settings: MySQLSettings, pool: Any, server: str) -> None:
        self.settings = settings
        self.server = server
        self._pool = pool
        module, name = _DRIVER_ERRORS[settings.driver]
        self.error: type[BaseException] = getattr(importlib.import_module(module), name)

    @property
    def is_mariadb(self) -> bool:
        """True on MariaDB (whose VERSION() says so)."""
        return "mariadb" in self.server.lower()

    @classmethod
    async def open(cls, dsn: str, *, migrate: bool = True,
                   pool_size: int = DEFAULT_POOL) -> MySQLConnection:
        """Connect, create or migrate the tables (unless `migrate` is False: readers such
        as `verify` must leave no trace), and start the pool (`pool_size` connections
        unless the DSN says otherwise).

        Raise `ValueError` for a bad DSN, `Transient` when the server cannot be reached.
        """
        settings = parse_mysql(dsn)
        driver = importlib.import_module(settings.driver)
        module, name = _DRIVER_ERRORS[settings.driver]
        error = getattr(importlib.import_module(module), name)
        common: dict[str, Any] = dict(
            host=settings.host, port=settings.port, user=settings.user,
            password=settings.password, db=settings.database, charset="utf8mb4",
            autocommit=True, connect_timeout=settings.connect_timeout)
        context = settings.ssl_context()
        if context is not None:
            common["ssl"] = context
        try:
            async with asyncio.timeout(settings.timeout):
                conn = await driver.connect(**common)
                try:
                    server, init = await _bootstrap(conn, migrate=migrate)
                finally:
                    conn.close()
                pool = await _create_pool(driver, settings, init, common, pool_size)
        except Exception as exc:
            where = f"{settings.host}:{settings.port}/{settings.database}"
            if isinstance(exc, TimeoutError) or classify(exc, error) == "transient":
                raise Transient(f"CMDB {where} unreachable: {describe(exc)}") from None
            raise StoreError(f"CMDB {where}: {describe(exc)}") from None
        return cls(settings, pool, server)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
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
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Bound an operation by the DSN's timeout and map driver errors to the engine's."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                yield
        except StoreError:
            raise
        except TimeoutError:
            raise Transient(f"CMDB {what}: no answer within {self.settings.timeout:g} s") from None
        except Exception as exc:
            kind = classify(exc, self.error)
            if kind == "data":
                raise DataError(describe(exc)) from exc
            if kind == "transient":
                raise Transient(f"CMDB {what}: {describe(exc)}") from exc
            raise StoreError(f"CMDB {what}: {describe(exc)}") from exc

    async def query(self, what: str, sql: str, args: Sequence[Any] = ()) -> Sequence[Any]:
        """Run one read in its own transaction; return every row."""
        async with self.guard(what), self.transaction() as cur:
            await cur.execute(sql, args)
            return await cur.fetchall()

    async def execute(self, what: str, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one write in its own transaction; return the affected rows."""
        async with self.guard(what), self.transaction() as cur:
            await cur.execute(sql, args)
            return int(cur.rowcount)

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to come back."""
        self._pool.close()
        await self._pool.wait_closed()


async def _create_pool(driver: Any, settings: MySQLSettings, init: str,
                       common: dict[str, Any], pool_size: int) -> Any:
    """Start the pool; with asyncmy, use the binary protocol for parameterised statements.

    asyncmy's statement cache turns every parameterised `execute` into a cached server-side
    prepared statement and, on MariaDB, `executemany` into one COM_STMT_BULK_EXECUTE:
    values travel in binary, so the client neither escapes nor quotes them. On 1.3 KB rows
    that is several times less client CPU than the text protocol (docs/benchmarks.md),
    which matters in a process that also parses every Pod event. An asyncmy without the
    option falls back to the text protocol.
    """
    options = dict(minsize=1, maxsize=settings.pool_size or pool_size, pool_recycle=3600,
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
