"""Table definitions generated from the kind descriptors, for MySQL/MariaDB and SQLite.

One function per dialect turns a `Kind` into its CREATE TABLE and index statements, so a
new kind's table is written down once, in its descriptor. Both backends refuse a value
too long for its column instead of truncating it: MySQL/MariaDB by strict mode (the store
enables `STRICT_TRANS_TABLES` in its sessions), SQLite by named CHECK constraints in STRICT
tables. JSON columns are MEDIUMTEXT (16 MiB) on MySQL, so an object with 100 KB of labels
fits. Every kind table carries the index `(cluster_id, state, query_at)`: a full sync
loads only Active rows, /status counts them, and tombstone retention finds old ones, all
by an index range instead of a scan of a cluster's tombstones.
"""

from __future__ import annotations

from synchronizer.kinds import Column, ColumnType, Kind

from .rows import CHECKSUM_LIMIT, KEY_LIMIT

MYSQL_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"


def index_name(table: str, columns: tuple[str, ...]) -> str:
    """A stable index name: `<table>_cluster_<columns...>`."""
    return f"{table}_cluster_{'_'.join(columns)}"


def indexes(kind: Kind) -> list[tuple[str, tuple[str, ...]]]:
    """(name, columns) of every secondary index of `kind`'s table, cluster_id first."""
    out = [(index_name(kind.table, ("state", "query_at")), ("cluster_id", "state", "query_at"))]
    for columns in kind.indexes:
        out.append((index_name(kind.table, columns), ("cluster_id", *columns)))
    return out


# -- MySQL / MariaDB ----------------------------------------------------------------------------


def mysql_type(column: Column) -> str:
    """The column's MySQL definition (type, nullability, default)."""
    if column.type is ColumnType.INT:
        if column.nullable:
            return "BIGINT NULL DEFAULT NULL"
        return f"BIGINT NOT NULL DEFAULT {int(column.default or 0)}"
    if column.type is ColumnType.JSON:
        return "MEDIUMTEXT NOT NULL"
    return f"VARCHAR({column.limit or 255}) NOT NULL DEFAULT ''"


def mysql_row_columns(kind: Kind) -> str:
    """The column definitions of a row of `kind` (key, stored columns, bookkeeping): the
    table's, and the same for its MySQL 8 stage, so both refuse the same values."""
    columns = ",\n  ".join(f"`{c.name}` {mysql_type(c)}" for c in kind.stored)
    return f"""cluster_id VARCHAR({KEY_LIMIT}) NOT NULL,
  uid VARCHAR({KEY_LIMIT}) NOT NULL,
  {columns},
  resource_version BIGINT NOT NULL,
  checksum VARCHAR({CHECKSUM_LIMIT}) NOT NULL,
  query_at DATETIME(6) NOT NULL,
  state ENUM('Active', 'Deleted') NOT NULL"""


CONTENT_SUM = "content_sum"
"""A kind table's stored generated column: the MD5 of the row's stored columns as they are
now, which the server keeps current through any write, ours or an operator's. A row whose
`checksum` differs from it was edited behind our back (`mysql_sql`, "Rows edited behind
our back"); reading the column, an index load costs no MD5 per row (a 100,000-row index:
0.27 → 0.10 s of the server's time). A change of a kind's stored columns must rebuild it
(a migration step)."""


def content_sum(kind: Kind, table: str = "") -> str:
    """The server-side checksum of a stored row's columns, the same as
    `kinds.descriptor.row_checksum`; `table` qualifies the column names (an alias)."""
    at = f"{table}." if table else ""
    parts = ", ".join(f"IFNULL({at}`{c.name}`, '')" if c.nullable else f"{at}`{c.name}`"
                      for c in kind.stored)
    return f"MD5(CONCAT_WS(CHAR(31), {parts}))"


def mysql_content_sum_column(kind: Kind) -> str:
    """The definition of `CONTENT_SUM` for `kind`'s table."""
    return f"`{CONTENT_SUM}` CHAR(32) AS ({content_sum(kind)}) STORED"


def load_key(kind: Kind) -> tuple[str, tuple[str, ...]]:
    """MySQL: (name, columns) of the index the full sync's index load reads alone.

    The load asks for uid, version, checksum and `content_sum` of a cluster's Active rows
    (`mysql_sql.load_index`). Through the primary key the server walks every whole row of
    the cluster (1-6 KB each); this index holds just those columns (the primary key's uid
    comes with every InnoDB secondary index), so the server reads a few percent of the
    bytes. Measured on 100,000 pods: 0.37 s -> 0.06 s for the query, most of which is now
    the client decoding rows (docs/benchmarks.md, "Fourth pass"). Not on SQLite, which
    computes the content checksum as it reads."""
    fixed = (kind.discriminator,) if kind.discriminator else ()
    return (f"{kind.table}_index_load",
            ("cluster_id", "state", *fixed, "resource_version", "checksum", CONTENT_SUM))


def mysql_create(kind: Kind) -> str:
    """CREATE TABLE IF NOT EXISTS for `kind`, with its indexes inline."""
    keys = ",\n  ".join(f"KEY {name} ({', '.join(f'`{c}`' for c in cols)})"
                        for name, cols in (*indexes(kind), load_key(kind)))
    return f"""CREATE TABLE IF NOT EXISTS `{kind.table}` (
  {mysql_row_columns(kind)},
  {mysql_content_sum_column(kind)},
  PRIMARY KEY (cluster_id, uid),
  {keys}
) {MYSQL_TABLE_OPTIONS}"""


# -- SQLite -------------------------------------------------------------------------------------


def _limited(name: str, limit: int, default: str | None = "''") -> str:
    default_sql = f" DEFAULT {default}" if default is not None else ""
    return (f'{name} TEXT NOT NULL{default_sql} CONSTRAINT "{name}: at most {limit} '
            f'characters" CHECK (length({name}) <= {limit})')


def sqlite_type(column: Column) -> str:
    """The column's SQLite definition, with a named CHECK for a length limit."""
    if column.type is ColumnType.INT:
        if column.nullable:
            return f"{column.name} INTEGER"
        return f"{column.name} INTEGER NOT NULL DEFAULT {int(column.default or 0)}"
    if column.type is ColumnType.JSON:
        return f"{column.name} TEXT NOT NULL DEFAULT '{column.default}'"
    return _limited(column.name, column.limit or 255)


def sqlite_create(kind: Kind, *, strict: bool = True) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements (IF NOT EXISTS) for `kind`."""
    columns = ",\n  ".join(sqlite_type(c) for c in kind.stored)
    table = f"""CREATE TABLE IF NOT EXISTS {kind.table} (
  {_limited("cluster_id", KEY_LIMIT, None)},
  {_limited("uid", KEY_LIMIT, None)},
  {columns},
  resource_version INTEGER NOT NULL,
  {_limited("checksum", CHECKSUM_LIMIT, None)},
  query_at TEXT NOT NULL,
  state TEXT NOT NULL CONSTRAINT "state: Active or Deleted"
    CHECK (state IN ('Active', 'Deleted')),
  PRIMARY KEY (cluster_id, uid)
){" STRICT" if strict else ""}"""
    return [table, *(f"CREATE INDEX IF NOT EXISTS {name} ON {kind.table} ({', '.join(cols)})"
                     for name, cols in indexes(kind))]
