"""What the service sees of a CMDB: a sink per kind, leases, and optional abilities.

The engine writes through `reconciler.Store` (load an index, apply a batch) and takes
leases through `reconciler.Leases`; a store offers the first per kind (`table(kind,
resource)`, a `KindTable`) and the second itself. Everything else is an ability a store
may or may not have, each a protocol of one to three methods, found at run time with
`isinstance` (client-go's optional interfaces): row reads for `verify`, active counts for
`/status`, dead letters, lease inspection, tombstone retention, the bk-cmdb pusher's
tables. A new store implements what it can; a caller that needs an ability asks for it and
says so when it is missing.

Stores are found by DSN scheme in a registry (`register`), not a switch: the MySQL and
SQLite stores register themselves on import, and `open_store(dsn)` opens the right one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from reconciler import (
    ApplyResult,
    ClusterId,
    Fence,
    Leases,
    Record,
    StoredIndex,
)
from synchronizer.kinds import Kind, Resource

from .dsn import redact, validate

if TYPE_CHECKING:
    from .bkcmdb_tables import BkCmdbTables

Fixed = Mapping[str, Any]
"""Column values a table view pins: the discriminator of one resource (`kind=Deployment`)."""

COUNT_CHUNK = 500
"""Most clusters one counting statement names (SQLite before 3.32 takes 999 parameters)."""


class KindBackend(Protocol):
    """What a store implements per kind; `KindTable` binds a kind and resource to it."""

    async def load_index(self, kind: Kind, fixed: Fixed,
                         cluster: ClusterId) -> StoredIndex:
        """Versions and checksums of the Active rows of a cluster in the view."""
        ...

    async def apply(self, kind: Kind, fixed: Fixed, cluster: ClusterId,
                    batch: Sequence[Record], fence: Fence | None) -> ApplyResult:
        """Write a batch under the merge rule (see `reconciler.Store`)."""
        ...

    async def reset_versions(self, kind: Kind, fixed: Fixed, cluster: ClusterId,
                             fence: Fence | None) -> int:
        """Versions of the view's rows to 0, Active checksums emptied (see
        `reconciler.Store.reset_versions`); fenced; the rows touched."""
        ...

    async def rows(self, kind: Kind, fixed: Fixed, cluster: ClusterId) -> list[dict[str, Any]]:
        """Every column of every row of a cluster in the view, ordered by uid."""
        ...

    async def count_active(self, kind: Kind, fixed: Fixed, clusters: Sequence[ClusterId]
                           ) -> dict[ClusterId, int]:
        """Active rows of each cluster in the view (0 for none), in a statement or a few
        for any number of clusters."""
        ...


class KindTable:
    """`reconciler.Store` for one kind (and one of its resources) of a CMDB."""

    def __init__(self, backend: KindBackend, kind: Kind, resource: Resource | None = None
                 ) -> None:
        self.kind = kind
        self.resource = resource
        self._backend = backend
        self._fixed: Fixed = ({kind.discriminator: resource.kind}
                              if kind.discriminator and resource is not None else {})

    @property
    def fixed(self) -> Fixed:
        """The column values this view pins (its discriminator), for a store's own use."""
        return self._fixed

    @property
    def backend(self) -> KindBackend:
        """The store this view writes to."""
        return self._backend

    def __repr__(self) -> str:
        which = f"/{self.resource.plural}" if self._fixed and self.resource else ""
        return f"KindTable({self.kind.name}{which})"

    async def load_index(self, cluster: ClusterId) -> StoredIndex:
        """The cluster's Active rows in this view (the full-sync diff's B)."""
        return await self._backend.load_index(self.kind, self._fixed, cluster)

    async def apply(self, cluster: ClusterId, batch: Sequence[Record], *,
                    fence: Fence | None = None) -> ApplyResult:
        """Write `batch` under the merge rule in one transaction (fenced when `fence`)."""
        if not batch:
            return ApplyResult()
        return await self._backend.apply(self.kind, self._fixed, cluster, batch, fence)

    async def reset_versions(self, cluster: ClusterId, *, fence: Fence | None = None) -> int:
        """After the cluster's versions went backwards: see `reconciler.Store`."""
        return await self._backend.reset_versions(self.kind, self._fixed, cluster, fence)

    async def rows(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """Every column of every row of the cluster in this view, by uid."""
        return await self._backend.rows(self.kind, self._fixed, cluster)

    async def count_active(self, cluster: ClusterId) -> int:
        """Active rows of the cluster in this view."""
        return (await self.count_active_many([cluster]))[cluster]

    async def count_active_many(self, clusters: Sequence[ClusterId]) -> dict[ClusterId, int]:
        """Active rows of each cluster in this view (a fleet's counts in a statement or
        a few, not a statement per cluster)."""
        return await self._backend.count_active(self.kind, self._fixed, clusters)


class CmdbStore(Leases, Protocol):
    """What every CMDB store offers: per-kind tables, leases, a health check, a close."""

    @property
    def dsn(self) -> str:
        """The DSN without any password (safe for logs and /status)."""
        ...

    def table(self, kind: Kind, resource: Resource | None = None) -> KindTable:
        """The engine's `Store` for `kind` (narrowed to one `resource` of a shared table)."""
        ...

    async def ping(self) -> None:
        """Return when the database answers; raise `reconciler.StoreError` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


@runtime_checkable
class DeadLetters(Protocol):
    """Rows the database refused, kept as evidence."""

    async def dead_letters(self, cluster: ClusterId) -> list[dict[str, Any]]:
        """The refused rows of one cluster, oldest first."""
        ...


@runtime_checkable
class LeaseReader(Protocol):
    """Inspect a cluster's lease row (tests, tools)."""

    async def lease(self, cluster: ClusterId) -> dict[str, Any] | None:
        """`{"owner", "epoch", "expires_at"}`, expired or not; None if never taken."""
        ...


@runtime_checkable
class Groups(Protocol):
    """Active rows of a kind counted by some of its columns (pods by workload, by module)."""

    async def group_active(self, kind: Kind, cluster: ClusterId, columns: Sequence[str],
                           limit: int) -> list[tuple[Any, ...]]:
        """(values..., count) of the largest groups, largest first; `columns` must be the
        kind's own column names (ValueError otherwise)."""
        ...


def checked_columns(kind: Kind, columns: Sequence[str]) -> list[str]:
    """The columns, if every one is a stored column of `kind` (they go into SQL text)."""
    known = {c.name for c in kind.stored}
    bad = [c for c in columns if c not in known]
    if bad or not columns:
        raise ValueError(f"{kind.name} has no column {', '.join(bad) or '(none given)'}")
    return list(columns)


@runtime_checkable
class TombstoneRetention(Protocol):
    """Remove tombstones older than a retention period (`sync.tombstone_retention`)."""

    async def purge_tombstones(self, kind: Kind, cluster: ClusterId, before: datetime,
                               limit: int) -> int:
        """Delete up to `limit` Deleted rows observed before `before`; return how many."""
        ...


@runtime_checkable
class BkCmdbStore(Protocol):
    """The bk-cmdb pusher's tables here: desired state, ledger, durable tasks
    (`bkcmdb_tables`, docs/bkcmdb-api.md "The pusher")."""

    def bkcmdb_tables(self, *, clock: Callable[[], float]) -> BkCmdbTables:
        """The pusher's stores on this database; `clock` is the tasks' wall clock."""
        ...


Opener = Callable[..., Awaitable[CmdbStore]]
_OPENERS: dict[str, Opener] = {}


def register(scheme: str, opener: Opener) -> None:
    """Make `open_store` open DSNs of `scheme` (and `scheme+driver`) with `opener`."""
    _OPENERS[scheme] = opener


async def open_store(dsn: str, *, migrate: bool = True, pool_size: int | None = None
                     ) -> CmdbStore:
    """Open the CMDB named by `dsn`, creating or migrating its tables (unless `migrate` is
    False, for read-only users such as `verify` and `check-config`).

    `mysql://user:pass@host:port/db` (driver asyncmy), `mysql+asyncmy://`,
    `mysql+aiomysql://`, or `sqlite:///relative/path.db` / `sqlite:////absolute/path.db`.
    A malformed DSN raises a one-line `ValueError` that names the problem and never repeats
    the DSN (it may hold a password); an unreachable server raises `reconciler.Transient`.
    `pool_size`: connections to keep, unless the DSN names its own number.
    """
    if not isinstance(dsn, str):
        raise ValueError("CMDB DSN is empty")
    validate(dsn)
    scheme = dsn.strip().partition("://")[0].lower().partition("+")[0]
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise ValueError(f"CMDB DSN scheme {scheme}:// has no store registered")
    return await opener(dsn.strip(), migrate=migrate, pool_size=pool_size)


__all__ = ["BkCmdbStore", "CmdbStore", "DeadLetters", "Groups", "KindBackend", "KindTable",
           "LeaseReader", "TombstoneRetention", "checked_columns", "open_store", "redact",
           "register"]
