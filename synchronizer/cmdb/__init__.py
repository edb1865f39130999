"""The CMDB stores: one table per kind, plus `leases`, `dead_letters` and `schema_version`,
on MySQL/MariaDB or SQLite.

Every store offers, per kind, the engine's `reconciler.Store` (`table(kind, resource)`: load
a cluster's index; apply a batch under the merge rule, inside the write itself) and
`reconciler.Leases` (a per-cluster lease with an owner, an epoch and an expiry, checked in
the same transaction as a fenced write); further abilities (dead letters, lease reads,
tombstone retention, the bk-cmdb pusher's tables) are small protocols in `api`.
`open_store(dsn)` picks a store by the DSN's scheme from a registry and creates or migrates
the tables (`schema`, `migrations`).
"""

from __future__ import annotations

from .api import (
    BkCmdbStore,
    CmdbStore,
    DeadLetters,
    KindTable,
    LeaseReader,
    TombstoneRetention,
    open_store,
    redact,
    register,
)
from .mysql import MySQLStore
from .sqlite import SQLiteStore

__all__ = [
    "BkCmdbStore",
    "CmdbStore",
    "DeadLetters",
    "KindTable",
    "LeaseReader",
    "MySQLStore",
    "SQLiteStore",
    "TombstoneRetention",
    "open_store",
    "redact",
    "register",
]
