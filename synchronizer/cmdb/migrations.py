"""Every schema step the CMDB has taken, oldest first: append new steps, never edit one.

Step 1 is the version 1 schema exactly as it shipped (pods, leases, dead letters), frozen
here as text so that a database created today goes through the same history as one
created then. Later steps are written with the operations of `schema` (idempotent, so a
crash half-way through a step, or two instances starting at once, leave a state the next
start finishes) and, for new tables, generated from the kind descriptors.
"""

from __future__ import annotations

from synchronizer.kinds import NAMESPACES, NODES, PODS, TRUNCATED, WORKLOADS, Column

from .bkcmdb_schema import V3_OPS
from .rows import CHECKSUM_LIMIT, KEY_LIMIT, OWNER_LIMIT
from .schema import (
    AddColumn,
    AddContentSum,
    AddIndex,
    CreateKindTable,
    DropIndex,
    Migration,
    Sql,
)
from .tables import MYSQL_TABLE_OPTIONS, index_name, load_key

_V1_TEXT = {"namespace": 253, "name": 253, "set_name": 255, "module_name": 255,
            "node_name": 253, "host_ip": 64, "pod_ip": 64, "phase": 32}


def _v1_pods_mysql() -> str:
    text = ",\n  ".join(f"`{c}` VARCHAR({n}) NOT NULL DEFAULT ''" for c, n in _V1_TEXT.items())
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
) {MYSQL_TABLE_OPTIONS}"""


def _limited(column: str, limit: int, default: str | None = "''") -> str:
    default_sql = f" DEFAULT {default}" if default is not None else ""
    return (f'{column} TEXT NOT NULL{default_sql} CONSTRAINT "{column}: at most {limit} '
            f'characters" CHECK (length({column}) <= {limit})')


def _v1_pods_sqlite() -> str:
    text = ",\n  ".join(_limited(c, n) for c, n in _V1_TEXT.items())
    return f"""CREATE TABLE IF NOT EXISTS pods (
  {_limited("cluster_id", KEY_LIMIT, None)},
  {_limited("uid", KEY_LIMIT, None)},
  {text},
  biz_id INTEGER NOT NULL DEFAULT 0,
  labels TEXT NOT NULL DEFAULT '{{}}',
  containers TEXT NOT NULL DEFAULT '[]',
  resource_version INTEGER NOT NULL,
  {_limited("checksum", CHECKSUM_LIMIT, None)},
  query_at TEXT NOT NULL,
  state TEXT NOT NULL CONSTRAINT "state: Active or Deleted"
    CHECK (state IN ('Active', 'Deleted')),
  PRIMARY KEY (cluster_id, uid)
){{strict}}"""


V1 = Migration(1, "pods, leases and dead letters", (
    Sql(mysql=_v1_pods_mysql(), sqlite=_v1_pods_sqlite()),
    Sql(sqlite="CREATE INDEX IF NOT EXISTS pods_cluster_state ON pods (cluster_id, state)"),
    Sql(sqlite="CREATE INDEX IF NOT EXISTS pods_cluster_namespace_name"
               " ON pods (cluster_id, namespace, name)"),
    Sql(mysql=f"""CREATE TABLE IF NOT EXISTS leases (
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL PRIMARY KEY,
  owner VARCHAR({OWNER_LIMIT}) NOT NULL,
  epoch BIGINT NOT NULL,
  expires_at DATETIME(6) NOT NULL
) {MYSQL_TABLE_OPTIONS}""", sqlite="""CREATE TABLE IF NOT EXISTS leases (
  cluster_id TEXT NOT NULL PRIMARY KEY,
  owner TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  expires_at TEXT NOT NULL
){strict}"""),
    Sql(mysql=f"""CREATE TABLE IF NOT EXISTS dead_letters (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL,
  uid VARCHAR(255) NOT NULL,
  error TEXT NOT NULL,
  payload MEDIUMTEXT NOT NULL,
  `at` DATETIME(6) NOT NULL,
  KEY dead_letters_cluster_at (cluster_id, `at`)
) {MYSQL_TABLE_OPTIONS}""", sqlite="""CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cluster_id TEXT NOT NULL,
  uid TEXT NOT NULL,
  error TEXT NOT NULL,
  payload TEXT NOT NULL,
  "at" TEXT NOT NULL
){strict}"""),
    Sql(sqlite='CREATE INDEX IF NOT EXISTS dead_letters_cluster_at'
               ' ON dead_letters (cluster_id, "at")'),
))

def _pods(name: str) -> Column:
    return next(c for c in PODS.stored if c.name == name)


V2 = Migration(2, "kinds: namespaces, nodes, workloads; pods name their workload", (
    AddColumn("pods", _pods("workload_kind")),
    AddColumn("pods", _pods("workload_name")),
    AddColumn("pods", TRUNCATED),
    AddIndex("pods", index_name("pods", ("state", "query_at")),
             ("cluster_id", "state", "query_at")),
    DropIndex("pods", "pods_cluster_state"),
    CreateKindTable(NAMESPACES),
    CreateKindTable(NODES),
    CreateKindTable(WORKLOADS),
    AddColumn("dead_letters", Column("kind", limit=64)),
))

V3 = Migration(3, "bk-cmdb pusher: ledger, durable tasks, rows by resource_version", V3_OPS)


def _registries_mysql() -> tuple[Sql, ...]:
    return (Sql(mysql=f"""CREATE TABLE IF NOT EXISTS topologies (
  name VARCHAR(253) NOT NULL PRIMARY KEY,
  version BIGINT NOT NULL,
  digest VARCHAR(64) NOT NULL,
  body MEDIUMTEXT NULL,
  updated_at DATETIME(6) NOT NULL
) {MYSQL_TABLE_OPTIONS}""", sqlite="""CREATE TABLE IF NOT EXISTS topologies (
  name TEXT NOT NULL PRIMARY KEY,
  version INTEGER NOT NULL,
  digest TEXT NOT NULL,
  body TEXT,
  updated_at TEXT NOT NULL
){strict}"""), Sql(mysql=f"""CREATE TABLE IF NOT EXISTS registered_clusters (
  cluster_id VARCHAR({KEY_LIMIT}) NOT NULL PRIMARY KEY,
  origin VARCHAR(32) NOT NULL,
  state VARCHAR(16) NOT NULL,
  updated_at DATETIME(6) NOT NULL
) {MYSQL_TABLE_OPTIONS}""", sqlite="""CREATE TABLE IF NOT EXISTS registered_clusters (
  cluster_id TEXT NOT NULL PRIMARY KEY,
  origin TEXT NOT NULL,
  state TEXT NOT NULL,
  updated_at TEXT NOT NULL
){strict}"""))


V4 = Migration(4, "registries: topologies of the admin API, clusters ever registered",
               _registries_mysql())
"""Step 4: `topologies` holds each topology document
the admin API stored (its tokens included, so every member can resolve them; a NULL body
is a deleted topology, its version kept so concurrent writers still serialise on it);
`registered_clusters` remembers every cluster a registry declared, so a cluster that
leaves every registry is found again after a restart (`sync.on_cluster_removed`)."""


V5 = Migration(5, "kind tables keep a stored content checksum (index loads compute none)",
               tuple(AddContentSum(kind) for kind in (PODS, NAMESPACES, NODES, WORKLOADS)))
"""Step 5: each kind table gets `content_sum` (`tables.CONTENT_SUM`), a stored generated
column (MySQL/MariaDB; SQLite computes the checksum as it reads). Adding it rewrites the
table once: about 2 s per 100,000 pods on MariaDB, at the first start of this release."""


V6 = Migration(6, "kind tables: a covering index for the full sync's index load (MySQL)",
               tuple(AddIndex(kind.table, *load_key(kind), mysql_only=True)
                     for kind in (PODS, NAMESPACES, NODES, WORKLOADS)))
"""Step 6: `tables.load_key`, so that loading a cluster's index reads an index, not every
whole row. Building it reads each table once (about 0.8 s per 100,000 pods on MariaDB) at the
first start of this release; InnoDB builds it online, writers are not blocked."""


MIGRATIONS: tuple[Migration, ...] = (V1, V2, V3, V4, V5, V6)
LATEST = MIGRATIONS[-1].version
