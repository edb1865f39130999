"""The CMDB tables, their migrations, and the conversion of records to rows.

One list of migrations serves both backends: each step carries its MySQL/MariaDB and its
SQLite statements, and a store applies the steps newer than the version recorded in
`schema_version`, in order, at start. Every statement is idempotent (`IF NOT EXISTS`),
because MySQL commits DDL implicitly: a crash half-way through a step must leave a state the
next start can finish. Two instances starting at once serialise on a lock (MySQL
`GET_LOCK`, SQLite's write lock), so each step runs once.

Column widths come from `synchronizer.projection.TEXT_LIMITS`, the single source of truth
shared with the projection. Both backends reject a too-long value instead of truncating it:
MySQL/MariaDB by strict mode (the store enables `STRICT_TRANS_TABLES` in its sessions and
never disables it), SQLite by named CHECK constraints in STRICT tables. `labels` and
`containers` are MEDIUMTEXT (16 MiB) on MySQL, so a Pod with 100 KB of labels fits.

Time: `query_at`, `expires_at` and `at` are UTC with microseconds: DATETIME(6) on MySQL; on
SQLite fixed-width text `YYYY-MM-DD HH:MM:SS.ffffff` (readable in the sqlite3 shell, sorts
correctly as text, and the same text MySQL prints for DATETIME(6)).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from reconciler import Record, State, StoreError
from synchronizer.projection import COLUMNS, TEXT_LIMITS

KEY_LIMIT = 128
"""Width of cluster_id and uid (a Pod UID is 36 characters; cluster ids are short names)."""
CHECKSUM_LIMIT = 64
OWNER_LIMIT = 255
ERROR_LIMIT = 4000
"""Dead-letter error text is cut to this many characters (the DB's message is short)."""
PAYLOAD_LIMIT = 1_000_000
"""Dead-letter payloads are cut to this many characters: the row is evidence, not a backup."""

POD_COLUMNS: tuple[str, ...] = (
    "cluster_id", "uid", *COLUMNS, "resource_version", "checksum", "query_at", "state",
)
"""Every column of `pods`, in the order rows are built and written."""

DEFAULTS: dict[str, Any] = {column: "" for column in COLUMNS} | {
    "biz_id": 0, "labels": "{}", "containers": "[]",
}
"""What a column holds when a record does not carry the field (a bare tombstone)."""


def db_time(moment: datetime) -> str:
    """Return `moment` as UTC text with microseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="microseconds")


def from_db_time(value: datetime | str) -> datetime:
    """Return a stored time (DATETIME or text) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def pod_row(cluster: str, record: Record) -> tuple[Any, ...]:
    """Build the `POD_COLUMNS` values of `record`; raise ValueError on a field of a wrong type.

    Missing fields take `DEFAULTS` (a full-sync tombstone knows only its key). `labels`
    and `containers` normally arrive as JSON text; a mapping or list is serialised the same
    way the projection does, so the stored text never depends on who built the record.
    """
    fields = record.fields
    values: list[Any] = [cluster, record.key]
    for column in COLUMNS:
        value = fields.get(column)
        if value is None:
            value = DEFAULTS[column]
        elif column == "biz_id":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"biz_id is {type(value).__name__}, expected integer")
        elif column in ("labels", "containers"):
            if not isinstance(value, str):
                value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        elif not isinstance(value, str):
            raise ValueError(f"{column} is {type(value).__name__}, expected string")
        values.append(value)
    values += [int(record.version), str(record.checksum), db_time(record.query_at),
               State(record.state).value]
    return tuple(values)


def dead_letter_payload(record: Record) -> str:
    """Serialise a refused record for the dead-letter table (cut to `PAYLOAD_LIMIT`)."""
    text = orjson.dumps(
        {"key": record.key, "version": record.version, "checksum": record.checksum,
         "state": str(record.state), "query_at": str(record.query_at),
         "fields": dict(record.fields)},
        default=str, option=orjson.OPT_SORT_KEYS,
    ).decode()
    return clean_text(text, PAYLOAD_LIMIT)


def clean_text(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters and replace lone surrogates, so it can be stored."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the same change for both backends, idempotent statements only."""

    version: int
    why: str
    mysql: Sequence[str]
    sqlite: Sequence[str]


def _mysql_pods() -> str:
    text = ",\n  ".join(f"`{c}` VARCHAR({n}) NOT NULL DEFAULT ''" for c, n in TEXT_LIMITS.items())
    return f"""CREATE TABLE IF NOT EXISTS pods (
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL,
  uid VARCHAR({KEY_LIMIT}) NOT NULL,
  {text},
  biz_id BIGINT NOT NULL DEFAULT 0,
  labels MEDIUMTEXT NOT NULL,
  containers MEDIUMTEXT NOT NULL,
  resource_version BIGINT NOT NULL,
  checksum VARCHAR({CHECKSUM_LIMIT}) NOT NULL,
  query_at DATETIME(6) NOT NULL,
  state ENUM('Active', 'Deleted') NOT NULL,
  PRIMARY KEY (cluster_id, uid),
  KEY pods_cluster_state (cluster_id, state),
  KEY pods_cluster_namespace_name (cluster_id, namespace, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""


def _sqlite_pods(strict: bool) -> str:
    def limited(column: str, limit: int, default: str | None = "''") -> str:
        default_sql = f" DEFAULT {default}" if default is not None else ""
        return (f'{column} TEXT NOT NULL{default_sql} CONSTRAINT "{column}: at most {limit} '
                f'characters" CHECK (length({column}) <= {limit})')

    text = ",\n  ".join(limited(c, n) for c, n in TEXT_LIMITS.items())
    return f"""CREATE TABLE IF NOT EXISTS pods (
  {limited("cluster_id", KEY_LIMIT, None)},
  {limited("uid", KEY_LIMIT, None)},
  {text},
  biz_id INTEGER NOT NULL DEFAULT 0,
  labels TEXT NOT NULL DEFAULT '{{}}',
  containers TEXT NOT NULL DEFAULT '[]',
  resource_version INTEGER NOT NULL,
  {limited("checksum", CHECKSUM_LIMIT, None)},
  query_at TEXT NOT NULL,
  state TEXT NOT NULL CONSTRAINT "state: Active or Deleted"
    CHECK (state IN ('Active', 'Deleted')),
  PRIMARY KEY (cluster_id, uid)
){" STRICT" if strict else ""}"""


def _migrations(strict: bool) -> tuple[Migration, ...]:
    return (
        Migration(
            1, "pods, leases and dead letters",
            mysql=(
                _mysql_pods(),
                f"""CREATE TABLE IF NOT EXISTS leases (
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL PRIMARY KEY,
  owner VARCHAR({OWNER_LIMIT}) NOT NULL,
  epoch BIGINT NOT NULL,
  expires_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
                f"""CREATE TABLE IF NOT EXISTS dead_letters (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL,
  uid VARCHAR(255) NOT NULL,
  error TEXT NOT NULL,
  payload MEDIUMTEXT NOT NULL,
  `at` DATETIME(6) NOT NULL,
  KEY dead_letters_cluster_at (cluster_id, `at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
            ),
            sqlite=(
                _sqlite_pods(strict),
                "CREATE INDEX IF NOT EXISTS pods_cluster_state ON pods (cluster_id, state)",
                "CREATE INDEX IF NOT EXISTS pods_cluster_namespace_name"
                " ON pods (cluster_id, namespace, name)",
                f"""CREATE TABLE IF NOT EXISTS leases (
  cluster_id TEXT NOT NULL PRIMARY KEY,
  owner TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  expires_at TEXT NOT NULL
){" STRICT" if strict else ""}""",
                f"""CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cluster_id TEXT NOT NULL,
  uid TEXT NOT NULL,
  error TEXT NOT NULL,
  payload TEXT NOT NULL,
  "at" TEXT NOT NULL
){" STRICT" if strict else ""}""",
                "CREATE INDEX IF NOT EXISTS dead_letters_cluster_at"
                ' ON dead_letters (cluster_id, "at")',
            ),
        ),
    )


MIGRATIONS: tuple[Migration, ...] = _migrations(strict=True)
"""Every schema step, oldest first; append new steps, never edit an applied one."""
LATEST = MIGRATIONS[-1].version

SCHEMA_VERSION_MYSQL = """CREATE TABLE IF NOT EXISTS schema_version (
  version INT NOT NULL PRIMARY KEY,
  why VARCHAR(255) NOT NULL,
  applied_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
SCHEMA_VERSION_SQLITE = """CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER NOT NULL PRIMARY KEY,
  why TEXT NOT NULL,
  applied_at TEXT NOT NULL
)"""


def pending(current: int, *, sqlite_strict: bool = True) -> tuple[Migration, ...]:
    """Return the steps newer than `current`, in order.

    `sqlite_strict=False` drops the STRICT keyword for SQLite libraries older than 3.37
    (type checks are then SQLite's usual affinity; the CHECK constraints still hold).
    """
    steps = MIGRATIONS if sqlite_strict else _migrations(strict=False)
    return tuple(step for step in steps if step.version > current)


async def migrate_mysql(cur: Any) -> None:
    """Apply the missing steps on MySQL under a named lock, so concurrent starts run each once.

    `cur` is an autocommit cursor of either driver. DDL commits implicitly on MySQL, hence
    the idempotent statements and `INSERT IGNORE` of the version row.
    """
    await cur.execute("SELECT DATABASE()")
    (database,) = await cur.fetchone()
    lock = f"bkcmdb-synchronizer.schema.{database}"[:64]
    await cur.execute("SELECT GET_LOCK(%s, 60)", (lock,))
    (got,) = await cur.fetchone()
    if got != 1:
        raise StoreError(f"schema lock {lock!r} not granted within 60 s")
    try:
        await cur.execute(SCHEMA_VERSION_MYSQL)
        await cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        (current,) = await cur.fetchone()
        for step in pending(int(current)):
            for statement in step.mysql:
                await cur.execute(statement)
            await cur.execute("INSERT IGNORE INTO schema_version (version, why, applied_at)"
                              " VALUES (%s, %s, NOW(6))", (step.version, step.why))
    finally:
        await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Apply the missing steps on SQLite inside one `BEGIN IMMEDIATE` transaction.

    SQLite's DDL is transactional and the write lock is taken up front, so two processes
    starting at once apply each step exactly once and a crash leaves no half-done step.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_VERSION_SQLITE)
        (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        for step in pending(current, sqlite_strict=sqlite3.sqlite_version_info >= (3, 37)):
            for statement in step.sqlite:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, why, applied_at) VALUES (?, ?, ?)",
                         (step.version, step.why, db_time(datetime.now(UTC))))
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
