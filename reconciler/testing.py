"""In-memory fakes of the engine's interfaces, public so users can test against them.

`MemoryStore` is the reference implementation of the merge rule (a max-register per key:
newer version wins; equal content only moves the version) plus leases and fencing; the SQL
stores are tested differentially against the same outcomes. `MemorySource` is a
scriptable source with a global version counter, paged consistent lists, a watch history
that can be compacted (→ `Expired`), cut (streams end) and replayed (duplicates).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ._checksum import TOMBSTONE, checksum
from ._errors import Expired, Fenced, Transient
from ._types import (
    ApplyResult,
    Bookmark,
    Checksum,
    ClusterId,
    Event,
    Fence,
    ObjectKey,
    Page,
    Record,
    State,
    StoredIndex,
    Unchanged,
)


def merge(stored: Record | None, incoming: Record) -> Record | None:
    """The merge rule: the row that results from writing `incoming` over `stored`.

    None means nothing changes. A row changes only when the incoming version is newer and
    its content (checksum, or state) differs; a delete keeps the stored fields. A `repair`
    record (from a full sync) also wins at an equal version when content or state differ.
    A newer version with the same content changes nothing at all (no version-only write:
    see docs/designs/006-no-version-only-writes.md).
    """
    if stored is None:
        return incoming
    if incoming.version < stored.version:
        return None
    if incoming.version == stored.version and not incoming.repair:
        return None
    same = incoming.checksum == stored.checksum and (
        incoming.state == stored.state or not incoming.repair)
    if same:
        return None
    if incoming.deleted:
        return replace(stored, version=incoming.version, query_at=incoming.query_at,
                       checksum=incoming.checksum, state=State.DELETED)
    return incoming


RELEASED = float("-inf")
"""The expiry of a lease given up on purpose: expired, and it fences its old owner."""


def lease_takeable(held: Fence, expired: bool, fence: Fence) -> bool:
    """The lease rule (the SQL stores implement the same): may `fence` take a lease that
    `held` holds? Yes for a higher epoch, for its own owner at an epoch not lower, and for
    anyone once expired, provided the epoch does not go down (epoch 0, standalone mode,
    may take any expired lease)."""
    if fence.epoch > held.epoch:
        return True
    if held.owner == fence.owner and held.epoch <= fence.epoch:
        return True
    return expired and (held.epoch <= fence.epoch or fence.epoch == 0)


class MemoryStore:
    """A `Store` and `Leases` in a dict; `fail_next` scripts transient failures."""

    def __init__(self) -> None:
        self.rows: dict[tuple[ClusterId, ObjectKey], Record] = {}
        self.leases: dict[ClusterId, tuple[Fence, float]] = {}
        self.fail_next = 0
        self.applied_batches = 0
        self.history: list[tuple[ObjectKey, int]] = []
        self.resets = 0
        self.lease_calls = 0
        """Calls of `acquire_many` (each one batch of acquisitions)."""

    async def load_index(self, cluster: ClusterId) -> StoredIndex:
        """Version and checksum of every Active row of `cluster`."""
        return StoredIndex.of_rows([(key, r.version, r.checksum)
                                    for (c, key), r in self.rows.items()
                                    if c == cluster and r.state is State.ACTIVE])

    async def apply(
        self, cluster: ClusterId, batch: Sequence[Record], *, fence: Fence | None = None
    ) -> ApplyResult:
        """Apply `batch` atomically under the merge rule."""
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise Transient("scripted failure")
        if fence is not None:
            held = self.leases.get(cluster)
            if held is None or held[0] != fence or held[1] == RELEASED:
                raise Fenced(f"cluster {cluster}: lease not held by {fence.owner}")
        written = 0
        for record in batch:
            k = (cluster, record.key)
            result = merge(self.rows.get(k), record)
            if result is not None:
                self.rows[k] = result
                self.history.append((record.key, result.version))
                written += 1
        self.applied_batches += 1
        return ApplyResult(written=written, unchanged=len(batch) - written)

    async def reset_versions(self, cluster: ClusterId, *, fence: Fence | None = None) -> int:
        """Every row of `cluster` to version 0 (see `reconciler.Store.reset_versions`)."""
        await asyncio.sleep(0)
        if fence is not None:
            held = self.leases.get(cluster)
            if held is None or held[0] != fence or held[1] == RELEASED:
                raise Fenced(f"cluster {cluster}: lease not held by {fence.owner}")
        keys = [k for k in self.rows if k[0] == cluster]
        for k in keys:
            row = self.rows[k]
            self.rows[k] = replace(row, version=0,
                                   checksum=row.checksum if row.deleted else Checksum(""))
        self.resets += 1
        return len(keys)

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """Take the lease: see `reconciler.Leases.acquire` for the rule."""
        now = asyncio.get_running_loop().time()
        held = self.leases.get(cluster)
        if held is None or lease_takeable(held[0], held[1] <= now, fence):
            self.leases[cluster] = (fence, now + ttl)
            return True
        return False

    async def acquire_many(self, requests: Sequence[tuple[ClusterId, Fence]],
                           ttl: float) -> list[bool]:
        """`acquire` for each request, in one call (`reconciler.LeaseBatch`)."""
        self.lease_calls += 1
        return [await self.acquire(cluster, fence, ttl) for cluster, fence in requests]

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """Expire the lease if `fence` holds it; the row (and its epoch) stays."""
        held = self.leases.get(cluster)
        if held is not None and held[0] == fence:
            self.leases[cluster] = (fence, RELEASED)

    def holder(self, cluster: ClusterId) -> Fence | None:
        """Who holds an unexpired lease on `cluster` now (None: nobody)."""
        held = self.leases.get(cluster)
        if held is None or held[1] <= asyncio.get_running_loop().time():
            return None
        return held[0]

    def active(self, cluster: ClusterId) -> dict[ObjectKey, Record]:
        """Active rows of `cluster`, by key."""
        return {k: r for (c, k), r in self.rows.items() if c == cluster and not r.deleted}


@dataclass(slots=True)
class _Change:
    kind: str
    key: ObjectKey
    version: int
    fields: Mapping[str, Any]


class MemorySource:
    """A scriptable source: objects keyed by uid, one global version counter."""

    def __init__(self, *, page_size: int = 50, clock: Any = None) -> None:
        self.objects: dict[ObjectKey, tuple[int, Mapping[str, Any]]] = {}
        self.version = 0
        self.page_size = page_size
        self.history: list[_Change] = []
        self.compacted = 0
        self.lists = 0
        self.vouched = 0
        self.watches = 0
        self.fail_list_after_pages: int | None = None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._changed = asyncio.Condition()
        self._cut = 0
        self._delivered: dict[int, int] = {}

    # -- mutations ------------------------------------------------------------------------

    def _record(self, change: _Change) -> Record:
        deleted = change.kind == "DELETED"
        return Record(
            key=change.key, version=change.version, query_at=self._clock(),
            checksum=TOMBSTONE if deleted else checksum(change.fields),
            state=State.DELETED if deleted else State.ACTIVE, fields=change.fields,
        )

    async def _emit(self, change: _Change) -> None:
        async with self._changed:
            self.history.append(change)
            self._changed.notify_all()

    async def put(self, key: str, fields: Mapping[str, Any]) -> int:
        """Create or update an object; return its new version."""
        self.version += 1
        kind = "MODIFIED" if key in self.objects else "ADDED"
        self.objects[ObjectKey(key)] = (self.version, dict(fields))
        await self._emit(_Change(kind, ObjectKey(key), self.version, dict(fields)))
        return self.version

    async def delete(self, key: str) -> int:
        """Delete an object; return the version of the deletion."""
        _, fields = self.objects.pop(ObjectKey(key))
        self.version += 1
        await self._emit(_Change("DELETED", ObjectKey(key), self.version, fields))
        return self.version

    async def restart_versions(self, start: int = 1) -> None:
        """Become a rebuilt cluster (or an etcd restored from a backup): the objects stay,
        re-stamped with versions counting up from `start`; the history is gone and every
        watch is cut. A watch resumed from a version above the new counter gets `Expired`,
        as a real API server's "too large resource version"."""
        self.version = start - 1
        for key in sorted(self.objects):
            self.version += 1
            self.objects[key] = (self.version, self.objects[key][1])
        self.history.clear()
        self.compacted = self.version
        await self.cut()

    def compact(self) -> None:
        """Forget the whole history: resuming any older watch now raises `Expired`."""
        self.compacted = self.version
        self.history = [c for c in self.history if c.version > self.compacted]

    async def cut(self) -> None:
        """End every open watch stream (as a dropped connection would)."""
        async with self._changed:
            self._cut += 1
            self._changed.notify_all()

    def truth(self) -> dict[ObjectKey, Record]:
        """The current objects as records: what a converged store holds as active."""
        return {
            k: self._record(_Change("ADDED", k, v, f)) for k, (v, f) in self.objects.items()
        }

    # -- Source ---------------------------------------------------------------------------

    async def list(self, unchanged: Unchanged | None = None) -> AsyncIterator[Page]:
        """Pages of a snapshot taken at call time; objects `unchanged` vouches for are held
        without a record (counted in `vouched`)."""
        self.lists += 1
        version = self.version
        items = sorted(self.objects.items())
        for n, start in enumerate(range(0, max(len(items), 1), self.page_size)):
            if self.fail_list_after_pages is not None and n >= self.fail_list_after_pages:
                self.fail_list_after_pages = None
                raise Expired("continue token expired")
            chunk = items[start:start + self.page_size]
            vouched = (await unchanged([k for k, _ in chunk], [v for _, (v, _) in chunk])
                       if unchanged is not None else [False] * len(chunk))
            held = [k for (k, _), yes in zip(chunk, vouched, strict=True) if yes]
            self.vouched += len(held)
            skip = set(held)
            records = [self._record(_Change("ADDED", k, v, f))
                       for k, (v, f) in chunk if k not in skip]
            yield Page(version=version, records=records, held=tuple(held))
            await asyncio.sleep(0)

    async def wait_watches(self, n: int = 1) -> None:
        """Return once `n` watches have been opened in all."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.watches >= n)

    async def wait_delivered(self) -> None:
        """Return once every open watch has yielded every change made so far."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: all(v >= self.version for v in self._delivered.values()))

    async def watch(self, since: int) -> AsyncIterator[Event]:
        """Changes after `since`, then new ones as they happen, until cut."""
        self.watches += 1
        async with self._changed:
            self._changed.notify_all()
        if since < self.compacted:
            raise Expired(f"version {since} is older than {self.compacted}")
        if since > self.version:
            raise Expired(f"too large resource version: {since}, current: {self.version}")
        cut = self._cut
        wid = self.watches
        self._delivered[wid] = since
        try:
            while True:
                async with self._changed:
                    def ready(after: int = since) -> bool:
                        return self._cut != cut or any(c.version > after for c in self.history)

                    await self._changed.wait_for(ready)
                    if self._cut != cut:
                        return
                    pending = [c for c in self.history if c.version > since]
                for change in pending:
                    since = change.version
                    yield self._record(change)
                    # resumed: the consumer has taken that change in
                    async with self._changed:
                        self._delivered[wid] = since
                        self._changed.notify_all()
                yield Bookmark(since)
        finally:
            self._delivered.pop(wid, None)
