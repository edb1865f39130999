"""The CMDB stores: the `pods`, `leases` and `dead_letters` tables on MySQL or SQLite.

Both stores implement `reconciler.Store` (load a cluster's index; apply a batch under the
merge rule, inside the write itself) and `reconciler.Leases` (a per-cluster lease with an
owner, an epoch and an expiry, checked in the same transaction as a fenced write), plus the
few reads the service needs (/status counts, `verify`, tests). `open_store(dsn)` picks one
by the DSN's scheme and creates or migrates the tables; see `schema` for the table layout.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from reconciler import ClusterId, Leases, Store

from .mysql import MySQLStore
from .sqlite import SQLiteStore

__all__ = ["CmdbStore", "LeaseRow", "MySQLStore", "SQLiteStore", "open_store"]

LeaseRow = dict[str, Any]
"""`{"owner": str, "epoch": int, "expires_at": datetime}` as returned by `lease()`."""


class CmdbStore(Store, Leases, Protocol):
    """What the service uses of a CMDB: the engine's two protocols and a few reads."""

    @property
    def dsn(self) -> str:
        """The DSN without any password (safe for logs and /status)."""
        ...

    async def count_by_state(self, cluster: ClusterId) -> dict[str, int]:
        """`{"Active": n, "Deleted": m}` for one cluster."""
        ...

    async def rows(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """Every column of every row of one cluster, ordered by uid."""
        ...

    async def dead_letters(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """The rows of one cluster the database refused, oldest first."""
        ...

    async def lease(self, cluster: ClusterId) -> LeaseRow | None:
        """The cluster's lease row, expired or not; None when nobody holds it."""
        ...

    async def ping(self) -> None:
        """Return when the database answers; raise `reconciler.StoreError` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


async def open_store(dsn: str, *, migrate: bool = True) -> MySQLStore | SQLiteStore:
    """Open the CMDB named by `dsn`, creating or migrating its tables (unless `migrate` is
    False, for read-only users such as `verify` and `check-config`).

    `mysql://user:pass@host:port/db` (driver asyncmy), `mysql+asyncmy://`,
    `mysql+aiomysql://`, or `sqlite:///relative/path.db` / `sqlite:////absolute/path.db`.
    A malformed DSN raises a one-line `ValueError` that names the problem and never repeats
    the DSN (it may hold a password); an unreachable server raises `reconciler.Transient`.
    """
    if not isinstance(dsn, str) or not dsn.strip():
        raise ValueError("CMDB DSN is empty")
    scheme = urlsplit(dsn.strip()).scheme.lower()
    if scheme == "sqlite":
        return await SQLiteStore.open(dsn.strip(), migrate=migrate)
    if scheme.partition("+")[0] == "mysql":
        return await MySQLStore.open(dsn.strip(), migrate=migrate)
    raise ValueError(f"CMDB DSN scheme {scheme + '://' if scheme else '(none)'} is not "
                     "supported; use mysql:// or sqlite:///")

