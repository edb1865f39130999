"""The small interfaces the engine is written against.

The engine sees a `Source` (where records come from), a `Store` (where they go, under the
merge rule), a `Leases` table (one full-sync writer per cluster, fenced), a `Metrics` sink
and a `Clock`. The synchronizer supplies Kubernetes, MySQL/SQLite and Prometheus
implementations; `reconciler.testing` supplies in-memory ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from ._types import (
    ApplyResult,
    ClusterId,
    Event,
    Fence,
    Page,
    Record,
    StoredIndex,
    Unchanged,
)


class Source(Protocol):
    """List a consistent snapshot, page by page; watch from a version.

    Both raise `Expired` when the version they need is gone (410) and `SourceUnavailable`
    on transient failures. A list that fails half-way must be restarted from scratch: the
    engine deletes nothing on the strength of a partial list.
    """

    def list(self, unchanged: Unchanged | None = None) -> AsyncIterator[Page]:
        """Yield the pages of one consistent list; each page carries the list's version.

        With `unchanged`, an object it vouches for (key, version) may be put in the page's
        `held` keys instead of its records; a source that cannot tell cheaply ignores it.
        """
        ...

    def watch(self, since: int) -> AsyncIterator[Event]:
        """Yield changes and bookmarks after `since`; return when the server ends the stream.

        A stream may hold back bookmarks (an idle watch of a busy cluster receives one a
        second, and waking the reader for each costs more than the rest of its work) as
        long as it hands over the newest before it ends or fails. Such a stream has a
        `prompt(version)` method: someone waits for `version`, hand over what you hold.
        """
        ...


class Store(Protocol):
    """Load a cluster's index; apply a batch under the merge rule.

    The rule, enforced by the store inside the write itself: a row changes only when the
    incoming version is newer than the stored one; then, if the checksum differs, every
    column is written (for a delete: state, checksum, version and query_at), and if it is
    equal only the version and query_at move forward. An unseen key is inserted, a delete
    of an unseen key inserts a tombstone. A record marked `repair` (a full sync's) is also
    written at a version equal to the stored one when checksum or state differ: every
    column for a live record; state, checksum and query_at for a delete.
    """

    async def load_index(self, cluster: ClusterId) -> StoredIndex:
        """Return version and checksum of every Active stored row of `cluster` (the
        checksum "" when the row's columns no longer match it)."""
        ...

    async def apply(
        self, cluster: ClusterId, batch: Sequence[Record], *, fence: Fence | None = None
    ) -> ApplyResult:
        """Write `batch` (at most one record per key) in one transaction.

        With a `fence`, raise `Fenced` unless the cluster's lease names that owner and
        epoch, checked in the same transaction.
        """
        ...


    async def reset_versions(self, cluster: ClusterId, *, fence: Fence | None = None) -> int:
        """Set the version of every row of `cluster` (Deleted ones too) to 0 and empty the
        checksum of its Active rows; return how many rows there were. One transaction,
        fenced like `apply`.

        Called when the cluster's versions went backwards (it was rebuilt, or its etcd
        restored): every listed version is then below the stored ones and would be
        refused as stale forever. An empty checksum reads as a row edited out of band, so
        the full sync that follows rewrites every listed object in full at its new version.
        """
        ...


class Leases(Protocol):
    """A per-cluster lease (owner, epoch, expiry) kept in the store."""

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """Take or renew the lease; True when `fence` now holds it.

        Succeeds when the lease is free, held with a lower epoch, already ours, or expired
        with an epoch not above ours. The stored epoch never goes down, so an old owner
        that has not yet heard of its successor cannot take an expired lease back; epoch 0
        (standalone mode, which has no epochs) may take any expired lease.
        """
        ...

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """Expire the lease if `fence` holds it: a successor need not wait, and the row
        keeps its epoch (never deleted)."""
        ...


class Metrics(Protocol):
    """A narrow metrics sink so the engine never imports a metrics library."""

    def inc(self, name: str, labels: Mapping[str, str], n: float = 1) -> None:
        """Add `n` to a counter."""
        ...

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Record one observation in a histogram."""
        ...

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Set a gauge."""
        ...


class Clock(Protocol):
    """Wall time, injected: durations use the loop clock, timestamps use this."""

    def __call__(self) -> datetime:
        """Return the current UTC time."""
        ...


class Runnable(Protocol):
    """Anything the controller can run until cancelled (a cluster reconciler)."""

    async def run(self) -> None:
        """Run until cancelled; raise to report a failure the supervisor should back off from."""
        ...

