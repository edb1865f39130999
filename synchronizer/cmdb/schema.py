"""Schema migrations: the operations a step is made of, and the runners for both backends.

One list of steps (`migrations.MIGRATIONS`) serves both backends; a store applies the steps
newer than the version recorded in `schema_version`, in order, at start. Every operation
is idempotent — a column or index is added only when absent, tables are created `IF NOT
EXISTS` — because MySQL commits DDL implicitly: a crash half-way through a step must leave
a state the next start can finish. (MariaDB's `ADD COLUMN IF NOT EXISTS` would do, but
MySQL 8 lacks it, so the runner looks in `information_schema` first.) Two instances
starting at once serialise on a lock (MySQL `GET_LOCK`, SQLite's write lock), so each step
runs once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler import StoreError
from synchronizer.kinds import Column, Kind

from .rows import db_time
from .tables import (
    CONTENT_SUM,
    indexes,
    mysql_content_sum_column,
    mysql_create,
    mysql_type,
    sqlite_create,
    sqlite_type,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sql:
    """Literal statements; a backend without its text skips the operation."""

    mysql: str | None = None
    sqlite: str | None = None
    """May contain `{strict}`, replaced by ` STRICT` where the library supports it."""


@dataclass(frozen=True, slots=True)
class AddColumn:
    """Add a column to a table unless it is there already."""

    table: str
    column: Column


@dataclass(frozen=True, slots=True)
class AddIndex:
    """Add a secondary index unless one of that name exists."""

    table: str
    name: str
    columns: tuple[str, ...]
    mysql_only: bool = False
    """An index of a MySQL-only column (`tables.CONTENT_SUM`): SQLite skips it."""


@dataclass(frozen=True, slots=True)
class DropIndex:
    """Drop a secondary index if it exists."""

    table: str
    name: str


@dataclass(frozen=True, slots=True)
class AddContentSum:
    """MySQL: add a kind table's stored content checksum (`tables.CONTENT_SUM`) unless it is
    there (a table created since has it). SQLite computes the checksum where it reads it."""

    kind: Kind


@dataclass(frozen=True, slots=True)
class CreateKindTable:
    """Create a kind's table and indexes from its descriptor (IF NOT EXISTS)."""

    kind: Kind


Op = Sql | AddColumn | AddIndex | DropIndex | CreateKindTable | AddContentSum


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the same change for both backends, idempotent operations only."""

    version: int
    why: str
    ops: Sequence[Op]


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


def pending(applied: Collection[int]) -> tuple[Migration, ...]:
    """The steps not applied yet, in order.

    By set, not by "newer than the highest": steps are numbered when they are written, on
    branches merged in any order, so a database may have step 4 before step 3 exists in
    the code it runs; step 3 must still run once it does (every step is idempotent and
    independent of the ones numbered after it).
    """
    from .migrations import MIGRATIONS

    done = set(applied)
    return tuple(step for step in MIGRATIONS if step.version not in done)


# -- MySQL / MariaDB ----------------------------------------------------------------------------


async def _exists(cur: Any, sql: str, args: tuple[Any, ...]) -> bool:
    await cur.execute(sql, args)
    (n,) = await cur.fetchone()
    return int(n) > 0


async def _mysql_op(cur: Any, op: Op) -> None:
    if isinstance(op, Sql):
        if op.mysql:
            await cur.execute(op.mysql)
    elif isinstance(op, CreateKindTable):
        await cur.execute(mysql_create(op.kind))
    elif isinstance(op, AddColumn):
        if not await _exists(cur, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE"
                             " TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME"
                             " = %s", (op.table, op.column.name)):
            await cur.execute(f"ALTER TABLE `{op.table}` ADD COLUMN `{op.column.name}`"
                              f" {mysql_type(op.column)}")
    elif isinstance(op, AddContentSum):
        if not await _exists(cur, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE"
                             " TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME"
                             " = %s", (op.kind.table, CONTENT_SUM)):
            await cur.execute(f"ALTER TABLE `{op.kind.table}` ADD COLUMN"
                              f" {mysql_content_sum_column(op.kind)}")
    elif isinstance(op, AddIndex | DropIndex):
        present = await _exists(cur, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE"
                                " TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME"
                                " = %s", (op.table, op.name))
        if isinstance(op, AddIndex) and not present:
            columns = ", ".join(f"`{c}`" for c in op.columns)
            await cur.execute(f"ALTER TABLE `{op.table}` ADD INDEX {op.name} ({columns})")
        elif isinstance(op, DropIndex) and present:
            await cur.execute(f"ALTER TABLE `{op.table}` DROP INDEX {op.name}")


async def migrate_mysql(cur: Any) -> None:
    """Apply the missing steps on MySQL under a named lock, so concurrent starts run each once.

    `cur` is an autocommit cursor of either driver. DDL commits implicitly on MySQL, hence
    the idempotent operations and `INSERT IGNORE` of the version row.
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
        await cur.execute("SELECT version FROM schema_version")
        applied = {int(v) for (v,) in await cur.fetchall()}
        for step in pending(applied):
            for op in step.ops:
                await _mysql_op(cur, op)
            await cur.execute("INSERT IGNORE INTO schema_version (version, why, applied_at)"
                              " VALUES (%s, %s, NOW(6))", (step.version, step.why))
    finally:
        await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_op(conn: sqlite3.Connection, op: Op, strict: str) -> None:
    if isinstance(op, Sql):
        if op.sqlite:
            conn.execute(op.sqlite.replace("{strict}", strict))
    elif isinstance(op, CreateKindTable):
        for statement in sqlite_create(op.kind, strict=bool(strict)):
            conn.execute(statement)
    elif isinstance(op, AddColumn):
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({op.table})")}
        if op.column.name not in present:
            conn.execute(f"ALTER TABLE {op.table} ADD COLUMN {sqlite_type(op.column)}")
    elif isinstance(op, AddIndex) and not op.mysql_only:
        conn.execute(f"CREATE INDEX IF NOT EXISTS {op.name} ON {op.table}"
                     f" ({', '.join(op.columns)})")
    elif isinstance(op, DropIndex):
        conn.execute(f"DROP INDEX IF EXISTS {op.name}")


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Apply the missing steps on SQLite inside one `BEGIN IMMEDIATE` transaction.

    SQLite's DDL is transactional and the write lock is taken up front, so two processes
    starting at once apply each step exactly once and a crash leaves no half-done step.
    STRICT tables need SQLite 3.37; older libraries get plain tables (type checks are then
    SQLite's usual affinity; the CHECK constraints still hold).
    """
    strict = " STRICT" if sqlite3.sqlite_version_info >= (3, 37) else ""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_VERSION_SQLITE)
        applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_version")}
        for step in pending(applied):
            for op in step.ops:
                _sqlite_op(conn, op, strict)
            conn.execute("INSERT INTO schema_version (version, why, applied_at) VALUES (?, ?, ?)",
                         (step.version, step.why, db_time(datetime.now(UTC))))
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


__all__ = ["AddColumn", "AddIndex", "CreateKindTable", "DropIndex", "Migration", "Sql",
           "indexes", "migrate_mysql", "migrate_sqlite", "pending"]
