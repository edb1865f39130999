"""Migration step 3: the tables and index the bk-cmdb pusher needs (DDL only).

Kept apart from `bkcmdb_tables` (the conversions to the pusher's values) so that the
migration list, which every store opening imports, does not import the pusher or its HTTP
client. See `bkcmdb_tables` for what the tables hold and why.
"""

from __future__ import annotations

from synchronizer.kinds import NAMESPACES, NODES, PODS, WORKLOADS

from .rows import KEY_LIMIT, OWNER_LIMIT
from .schema import AddIndex, Op, Sql
from .tables import MYSQL_TABLE_OPTIONS, index_name

NAME_LIMIT = 255
"""Ledger names and namespaces (Kubernetes names are at most 253 characters)."""
JOB_LIMIT = 64
RESULT_LIMIT = 1000
"""Characters of a task's result and error kept in its row (the runner cuts results to
500; a bk-cmdb message can be long and is evidence enough at this length)."""
KIND_TABLES = tuple(k.table for k in (NAMESPACES, NODES, WORKLOADS, PODS))


def version_index(table: str) -> str:
    """The name of the `(cluster_id, resource_version)` index of a kind table."""
    return index_name(table, ("resource_version",))


_LEDGER_MYSQL = f"""CREATE TABLE IF NOT EXISTS bkcmdb_ledger (
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL,
  kind VARCHAR(32) NOT NULL,
  uid VARCHAR({KEY_LIMIT}) NOT NULL,
  bk_id BIGINT NOT NULL,
  digest VARCHAR(64) NOT NULL DEFAULT '',
  name VARCHAR({NAME_LIMIT}) NOT NULL DEFAULT '',
  namespace VARCHAR({NAME_LIMIT}) NOT NULL DEFAULT '',
  bk_kind VARCHAR(64) NOT NULL DEFAULT '',
  parents VARCHAR(1000) NOT NULL DEFAULT '{{}}',
  updated_at DATETIME(6) NOT NULL,
  PRIMARY KEY (cluster_id, kind, uid)
) {MYSQL_TABLE_OPTIONS}"""
_LEDGER_SQLITE = f"""CREATE TABLE IF NOT EXISTS bkcmdb_ledger (
  cluster_id TEXT NOT NULL CHECK (length(cluster_id) <= {KEY_LIMIT}),
  kind TEXT NOT NULL,
  uid TEXT NOT NULL CHECK (length(uid) <= {KEY_LIMIT}),
  bk_id INTEGER NOT NULL,
  digest TEXT NOT NULL DEFAULT '',
  name TEXT NOT NULL DEFAULT '',
  namespace TEXT NOT NULL DEFAULT '',
  bk_kind TEXT NOT NULL DEFAULT '',
  parents TEXT NOT NULL DEFAULT '{{}}',
  updated_at TEXT NOT NULL,
  PRIMARY KEY (cluster_id, kind, uid)
){{strict}}"""
_TASKS_MYSQL = f"""CREATE TABLE IF NOT EXISTS bkcmdb_tasks (
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL,
  job VARCHAR({JOB_LIMIT}) NOT NULL,
  next_start DOUBLE NOT NULL,
  token BIGINT NOT NULL DEFAULT 0,
  `owner` VARCHAR({OWNER_LIMIT}) NOT NULL DEFAULT '',
  attempts INT NOT NULL DEFAULT 0,
  pending BIGINT NOT NULL DEFAULT 0,
  `result` VARCHAR({RESULT_LIMIT}) NOT NULL DEFAULT '',
  `error` VARCHAR({RESULT_LIMIT}) NOT NULL DEFAULT '',
  started_at DOUBLE NULL DEFAULT NULL,
  finished_at DOUBLE NULL DEFAULT NULL,
  PRIMARY KEY (cluster_id, job),
  KEY bkcmdb_tasks_next_start (next_start)
) {MYSQL_TABLE_OPTIONS}"""
_TASKS_SQLITE = f"""CREATE TABLE IF NOT EXISTS bkcmdb_tasks (
  cluster_id TEXT NOT NULL CHECK (length(cluster_id) <= {KEY_LIMIT}),
  job TEXT NOT NULL,
  next_start REAL NOT NULL,
  token INTEGER NOT NULL DEFAULT 0,
  owner TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  pending INTEGER NOT NULL DEFAULT 0,
  result TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  started_at REAL,
  finished_at REAL,
  PRIMARY KEY (cluster_id, job)
){{strict}}"""

V3_OPS: tuple[Op, ...] = (
    *(AddIndex(table, version_index(table), ("cluster_id", "resource_version"))
      for table in KIND_TABLES),
    Sql(mysql=_LEDGER_MYSQL, sqlite=_LEDGER_SQLITE),
    Sql(mysql=_TASKS_MYSQL, sqlite=_TASKS_SQLITE),
    Sql(sqlite="CREATE INDEX IF NOT EXISTS bkcmdb_tasks_next_start"
               " ON bkcmdb_tasks (next_start)"),
)
"""Migration step 3: what the bk-cmdb pusher needs (idempotent operations only)."""

__all__ = ["KIND_TABLES", "NAME_LIMIT", "RESULT_LIMIT", "V3_OPS", "version_index"]
