"""Connections to MySQL/MariaDB: the pool, transactions, and driver errors in engine terms.

Sessions run with time_zone UTC, READ COMMITTED (fewer gap locks, so fewer deadlocks between
concurrent upserts) and strict mode enabled if the server's default lacked it: a too-long
value is an error for that row, never a silent truncation.

The driver is asyncmy by default (see docs/benchmarks.md, "CMDB drivers"); aiomysql stays
selectable with `mysql+aiomysql://` because both speak the same pymysql-style API. Errors
are classified once here: "transient" (the same statement may succeed later: deadlock,
lock wait timeout, connection lost or killed, server shutting down, read-only, too many
connections, disk full), "data" (this row can never be written as it is), or other.

The server's VERSION() picks the formulation of the merge rule (`upsert`, see
docs/designs/007-mysql8.md): `staged` on MySQL 8.0 and later, whose manual deprecates
`VALUES()` and assignments to user variables inside expressions, `variables` on MariaDB
and older MySQL; the DSN's `upsert=` overrides it. Some set-up belongs to a session, not
to a transaction (the staged formulation's temporary tables): `on_new_session` registers
it, and each pooled connection runs it once, before its first transaction.

TLS: a mode that requires it (`required`, `verify_ca`, `verify_identity`) is checked on
every session, by asking the server whether this session is encrypted
(`Ssl_version`): aiomysql carries on in plain text when the server offers no TLS, and a
required mode must not depend on which driver is configured. `preferred` asks the server
what it offers first (its handshake's capability flags), so that asyncmy, which would
otherwise insist on TLS, falls back to plain text the way the mode promises. A failed
handshake (unknown CA, wrong host name) is one line naming TLS and the reason.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import re
import ssl
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from reconciler import StoreError, Transient

from . import schema
from .dsn import TLS_REQUIRED, MySQLSettings, parse_mysql

_DRIVER_ERRORS = {"asyncmy": ("asyncmy.errors", "MySQLError"),
                  "aiomysql": ("pymysql.err", "MySQLError")}
_TRANSIENT = frozenset({1021, 1040, 1053, 1114, 1152, 1158, 1159, 1160, 1161, 1203, 1205,
                        1213, 1290, 1317, 1637, 1792, 1836, 1927, 1969, 4031})
_INSECURE_TRANSPORT = frozenset({3159})
"""MySQL's "connections using insecure transport are prohibited" (ER_SECURE_TRANSPORT_REQUIRED)."""
ACCESS_DENIED = 1045
_DATA = frozenset({1048, 1062, 1264, 1265, 1292, 1300, 1366, 1367, 1406, 1411, 1451, 1452,
                   1690, 3140, 3819, 4025})

IDLE_TRANSACTION_TIMEOUT = 5
"""Seconds MariaDB lets a transaction of ours sit idle before ending it (see `_bootstrap`)."""
DEFAULT_POOL = 10
"""Connections when neither the DSN nor the service asks for another number."""
STATEMENT_CACHE = 32
"""Prepared statements asyncmy keeps per connection: a few per kind, four kinds."""
CLIENT_SSL = 0x800
"""The capability flag of a server's greeting that says it can start TLS."""
GREETING_V10 = 10
"""The protocol version byte of every MySQL and MariaDB greeting since MySQL 3.21."""
NO_TLS = "the server does not offer TLS (its have_ssl is not YES) but ssl_mode={} requires it"
STAGED_SINCE = (8, 0)
"""MySQL versions from which `upsert=auto` picks the staged formulation: 8.0.13 deprecates
assignments to user variables in expressions, 8.0.20 deprecates `VALUES()` in
`ON DUPLICATE KEY UPDATE`; the staged statements are valid on every 8.x (and on 5.7)."""

GREETING_TIMEOUT = 5.0
"""Seconds to wait for a server's greeting when explaining a failed TLS handshake."""

SessionStep = Callable[[Any], Awaitable[None]]
"""Set-up run once per session with an autocommit cursor, before its first transaction."""


class DataError(StoreError):
    """The server refused a row's values: isolate the row, do not retry the batch as is."""


def error_code(exc: BaseException) -> int:
    """The server's (or client's) error number of a driver error; 0 if it has none."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0



def classify(exc: BaseException, driver_error: type[BaseException]) -> str:
    """Classify an exception as "data", "transient" or "other"."""
    if isinstance(exc, UnicodeEncodeError):
        return "data"
    if isinstance(exc, driver_error):
        code = error_code(exc)
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


_SSL_REASON = re.compile(r"\[SSL: [A-Z0-9_]+\] ([^(]*)")


def tls_failure(exc: BaseException) -> str | None:
    """The reason of a failed TLS handshake, if `exc` is one (either driver, any depth).

    asyncmy and aiomysql wrap the `ssl` module's error into their own "can't connect"
    error (code 2003), whose text carries OpenSSL's `[SSL: CODE] reason (file:line)`.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) and seen.verify_message:
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError) and seen.reason:
            return str(seen.reason).replace("_", " ").lower()
        seen = seen.__cause__ or seen.__context__
    match = _SSL_REASON.search(describe(exc))
    return match.group(1).strip() if match else None


def choose_upsert(server: str, requested: str = "auto") -> str:
    """The formulation of the merge rule for a server's VERSION() (see the module doc)."""
    if requested != "auto":
        return requested
    if "mariadb" in server.lower():
        return "variables"
    found = re.match(r"(\d+)\.(\d+)", server)
    version = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    return "staged" if version >= STAGED_SINCE else "variables"


class MySQLConnection:
    """A pool of sessions to one database, with transactions and error mapping."""

    def __init__(self, settings: MySQLSettings, pool: Any, server: str,
                 upsert: str | None = None) -> None:
        self.settings = settings
        self.server = server
        self.upsert = upsert or choose_upsert(server, settings.upsert)
        """The formulation of the merge rule in use: "variables" or "staged"."""
        self._pool = pool
        module, name = _DRIVER_ERRORS[settings.driver]
        self.error: type[BaseException] = getattr(importlib.import_module(module), name)
        self._steps: dict[str, SessionStep] = {}
        self._done: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        if settings.ssl_mode in TLS_REQUIRED:
            self.on_new_session("tls", functools.partial(_require_tls, mode=settings.ssl_mode))

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

        Raise `ValueError` for a bad DSN, `Transient` when the server cannot be reached,
        `StoreError` when it refuses us (TLS, credentials, privileges).
        """
        settings = parse_mysql(dsn)
        driver = importlib.import_module(settings.driver)
        module, name = _DRIVER_ERRORS[settings.driver]
        error = getattr(importlib.import_module(module), name)
        common: dict[str, Any] = dict(
            host=settings.host, port=settings.port, user=settings.user,
            password=settings.password, db=settings.database, charset="utf8mb4",
            autocommit=True, connect_timeout=settings.connect_timeout)
        where = f"{settings.host}:{settings.port}/{settings.database}"
        try:
            async with asyncio.timeout(settings.timeout):
                context = settings.ssl_context()
                if context is not None and settings.ssl_mode == "preferred":
                    offered = await offers_tls(settings.host, settings.port)
                    context = context if offered else None
                if context is not None:
                    common["ssl"] = context
                conn = await driver.connect(**common)
                try:
                    async with conn.cursor() as cur:
                        if settings.ssl_mode in TLS_REQUIRED:
                            await _require_tls(cur, settings.ssl_mode)
                        server, init = await _bootstrap(cur, migrate=migrate)
                finally:
                    conn.close()
                pool = await _create_pool(driver, settings, init, common, pool_size)
        except StoreError as exc:
            raise type(exc)(f"CMDB {where}: {exc}") from None
        except Exception as exc:
            reason = tls_failure(exc)
            if reason is not None:
                if await _offered_quietly(settings.host, settings.port) is False:
                    reason = NO_TLS.format(settings.ssl_mode)
                else:
                    reason = f"TLS handshake failed (ssl_mode={settings.ssl_mode}): {reason}"
                raise StoreError(f"CMDB {where}: {reason}") from None
            if isinstance(exc, TimeoutError) or classify(exc, error) == "transient":
                raise Transient(f"CMDB {where} unreachable: {describe(exc)}") from None
            raise StoreError(f"CMDB {where}: {describe(exc)}{await _hint(exc, settings)}"
                             ) from None
        return cls(settings, pool, server)

    def on_new_session(self, key: str, step: SessionStep) -> None:
        """Run `step` once on every session (pooled connection), before its first
        transaction; registering a key again is a no-op."""
        self._steps.setdefault(key, step)

    async def _prepare(self, conn: Any) -> None:
        done = self._done.setdefault(conn, set())
        missing = [key for key in self._steps if key not in done]
        if not missing:
            return
        async with conn.cursor() as cur:
            for key in missing:
                await self._steps[key](cur)
                done.add(key)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A cursor inside BEGIN ... COMMIT; on any failure the connection is discarded.

        Discarding (not rolling back) is deliberate: after a cancellation or a lost
        connection the protocol state is unknown, and failures are rare enough that a
        reconnect costs nothing measurable. A session's own set-up (`on_new_session`) runs
        before its first BEGIN, outside any transaction.
        """
        async with self._cursor(begin=True) as cur:
            yield cur

    @asynccontextmanager
    async def _cursor(self, *, begin: bool) -> AsyncIterator[Any]:
        """A cursor of a pooled session, inside BEGIN ... COMMIT or, without `begin`, in
        the session's autocommit (a single statement is then a transaction of its own);
        on any failure the connection is discarded (see `transaction`)."""
        async with self._pool.acquire() as conn:
            try:
                await self._prepare(conn)
                if begin:
                    await conn.begin()
                async with conn.cursor() as cur:
                    yield cur
                if begin:
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
        """Run one read in its own transaction (autocommit: one round trip, not the three
        of BEGIN, the read and COMMIT; a fleet's first sync loads 1,600 indexes); return
        every row."""
        async with self.guard(what), self._cursor(begin=False) as cur:
            await cur.execute(sql, args)
            return await cur.fetchall()

    async def execute(self, what: str, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one write in its own transaction (autocommit, as `query`); return the
        affected rows."""
        async with self.guard(what), self._cursor(begin=False) as cur:
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

    Not over TLS: asyncmy (0.2.18) asks for TLS with a packet that carries none of
    MariaDB's extended capabilities, and the server keeps the capabilities of that first
    packet, so it refuses the bulk command ("MySQL error 1295: This command is not
    supported in the prepared statement protocol yet") while the driver believes it
    agreed. TLS sessions therefore use the text protocol (tests/cmdb/test_cmdb_tls.py).
    """
    options = dict(minsize=1, maxsize=settings.pool_size or pool_size, pool_recycle=3600,
                   init_command=init, **common)
    if settings.driver == "asyncmy" and "ssl" not in common:
        try:
            return await driver.create_pool(stmt_cache_size=STATEMENT_CACHE, **options)
        except TypeError:
            pass
    return await driver.create_pool(**options)


async def offers_tls(host: str, port: int) -> bool | None:
    """Whether the server's greeting offers TLS; None if it sent no usable greeting.

    The server speaks first (Protocol::HandshakeV10): a 4-byte packet header, the protocol
    version (10), the server version ending in NUL, a 4-byte connection id, 8 bytes of
    scramble, a filler byte, then the low two bytes of its capability flags, where
    `CLIENT_SSL` says whether it can start TLS. Reading the greeting sends nothing, so a
    mode that wants TLS learns this without offering any credential in plain text.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(int.from_bytes(header[:3], "little"))
    except (OSError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
    end = payload.find(b"\0", 1)
    if not payload or payload[0] != GREETING_V10 or end < 0 or len(payload) < end + 16:
        return None
    flags = int.from_bytes(payload[end + 14:end + 16], "little")
    return bool(flags & CLIENT_SSL)


async def _offered_quietly(host: str, port: int) -> bool | None:
    """`offers_tls`, with any failure to ask meaning "unknown" (None)."""
    try:
        async with asyncio.timeout(GREETING_TIMEOUT):
            return await offers_tls(host, port)
    except (OSError, TimeoutError):
        return None


async def _require_tls(cur: Any, mode: str) -> None:
    """Refuse a session that is not encrypted (the server names this session's TLS
    version, empty in plain text): aiomysql falls back to plain text silently."""
    await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
    found = await cur.fetchall()
    if not found or not found[0][1]:
        raise StoreError(NO_TLS.format(mode))


async def _hint(exc: BaseException, settings: MySQLSettings) -> str:
    """A short remedy when the cause may be the DSN's TLS mode rather than the server.

    MySQL refuses plain text under `require_secure_transport` with its own error; MariaDB
    10.11 says only "Access denied", so a refusal in plain text from a server that offers
    TLS names the likely cause (the greeting tells, without another login attempt).
    """
    code = error_code(exc)
    if code in _INSECURE_TRANSPORT:
        return " (the server requires TLS: set ssl_mode=required or stronger in the DSN)"
    if (code == ACCESS_DENIED and settings.ssl_mode == "disabled"
            and await _offered_quietly(settings.host, settings.port)):
        return (" (in plain text, to a server that offers TLS: if it requires secure"
                " transport, set ssl_mode=required or stronger in the DSN)")
    return ""


async def _bootstrap(cur: Any, *, migrate: bool = True) -> tuple[str, str]:
    """Read the server's version, build the session set-up, and migrate the schema.

    Returns (server version, init command for pooled sessions). The isolation variable is
    `tx_isolation` on MariaDB before 11.1 and `transaction_isolation` on MySQL 8.
    """
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
        # `CREATE TABLE IF NOT EXISTS` of an existing table leaves a note, which the
        # drivers log as a warning at every start: not news. (This session only.)
        await cur.execute("SET SESSION sql_notes = 0")
        await schema.migrate_mysql(cur)
    return str(server), init
