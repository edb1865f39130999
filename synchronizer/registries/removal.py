"""Clusters that left every registry: stopped, and with `on_cluster_removed: delete`,
their rows soft-deleted.

A master duty that follows the registry pulls. After each complete pull (every registry
has answered at least once; an unreachable one counts with its last good answer), it
records every declared cluster in `registered_clusters` and looks for clusters recorded
as declared that no registry declares any more. Such a cluster is already stopped - the
assignment no longer has it - and, once no instance is assigned it, is dealt with:

- `keep` (the default): its rows stay exactly as they are; it is marked `Removed`.
- `delete`: every Active row of every kind becomes a tombstone *at its own stored
  version* (`state = Deleted`, `query_at` = now), then it is marked `Removed`. At its own
  version, because nothing newer was observed: the row is not pretended to have died at
  some later revision. If the cluster comes back, its first full sync lists the objects
  that still exist at their versions, and full-sync records win at an equal version when
  the state differs (docs/designs/001), so they become Active again; anything newer wins
  anyway.

Never a cluster still in a registry: a held cluster (paused SyncCluster, BCS cluster not
RUNNING) is declared, and nothing is done while some registry has never answered. The
tombstones are written through the cluster's lease, taken with an epoch above any owner's
(the assignment znode's current zxid; 0 standalone), so an old owner that has not yet
heard it lost the cluster cannot write behind them (it is fenced); the lease is given up
when done. A removal that cannot take the lease (an owner still stopping) is retried on
the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Literal

from reconciler import TOMBSTONE, ClusterId, Fence, Record, State
from synchronizer.cmdb import CmdbStore
from synchronizer.kinds import KINDS

from .api import RegistryPull
from .tables import DECLARED, REMOVED, RegistryTables

log = logging.getLogger(__name__)

ID_LIMIT = 128
"""The CMDB's cluster_id width: a longer id (an unusable SyncCluster's, held) never ran."""
BATCH = 500
"""Tombstones per transaction."""
PASS_EVERY = 30.0
"""Seconds between passes when nothing is waiting and no pull happened."""
RETRY_EVERY = 1.0
"""Seconds between passes while a removed cluster waits for its owner to stop."""


class Removal:
    """The master's handling of removed clusters; see the module docstring."""

    def __init__(self, *, pull: RegistryPull, store: Callable[[], CmdbStore],
                 assigned: Callable[[], Collection[str]],
                 fence: Callable[[], Awaitable[Fence]],
                 mode: Literal["keep", "delete"], lease_ttl: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._pull = pull
        self._store = store
        self._assigned = assigned
        self._fence = fence
        self.mode = mode
        self._ttl = lease_ttl
        self._clock = clock
        self.pending: frozenset[str] = frozenset()
        """Clusters that left every registry and are not dealt with yet."""
        self.removed: list[str] = []
        """Clusters dealt with by this instance, in order (for /status and tests)."""
        self.seen = 0
        """The pull generation the latest finished pass started from: `pending` is true of
        every pull up to it (what a SyncCluster's finalizer waits for)."""

    async def run(self) -> None:
        """Follow the pulls until cancelled."""
        seen = -1
        while True:
            waiting = await self.pass_once()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_EVERY if waiting else PASS_EVERY):
                    seen = await self._pull.wait_pulled(seen)

    async def pass_once(self) -> bool:
        """Record declared clusters; deal with those no registry declares any more.
        True when some removed cluster is still waiting (for its owner to stop)."""
        if not self._pull.complete:
            return False
        generation = self._pull.generation
        declared = dict(self._pull.declared)
        tables = RegistryTables(self._store())
        registered = await tables.registered()
        await tables.mark([(c, str(s.origin)) for c, s in declared.items()
                           if registered.get(c) != DECLARED and len(c) <= ID_LIMIT], DECLARED)
        gone = sorted(c for c, state in registered.items()
                      if state == DECLARED and c not in declared)
        self.pending = frozenset(gone)
        assigned = self._assigned()
        for cluster in gone:
            if cluster in assigned or cluster in self._pull.declared:
                continue  # not unassigned yet, or declared again meanwhile
            if self.mode == "delete" and not await self._soft_delete(ClusterId(cluster)):
                continue  # its lease is still held: an owner is stopping
            await tables.mark([(cluster, "")], REMOVED)
            self.removed.append(cluster)
            self.pending = self.pending - {cluster}
            log.info("cluster %s left every registry: stopped, rows %s", cluster,
                     "soft-deleted" if self.mode == "delete" else "kept")
        self.seen = generation
        return bool(self.pending)

    async def _soft_delete(self, cluster: ClusterId) -> bool:
        store = self._store()
        fence = await self._fence()
        if not await store.acquire(cluster, fence, self._ttl):
            log.info("cluster %s left every registry; its lease is still held, retrying",
                     cluster)
            return False
        try:
            total = 0
            now = self._clock()
            for kind in KINDS.values():
                for resource in kind.resources:
                    table = store.table(kind, resource)
                    index = await table.load_index(cluster)
                    versions = index.versions
                    keys = list(versions)
                    for start in range(0, len(keys), BATCH):
                        if not await store.acquire(cluster, fence, self._ttl):
                            return False
                        batch = [Record(key=k, version=versions[k], checksum=TOMBSTONE,
                                        query_at=now, state=State.DELETED, repair=True)
                                 for k in keys[start:start + BATCH]]
                        await table.apply(cluster, batch, fence=fence)
                        total += len(batch)
            log.info("cluster %s: %d rows soft-deleted", cluster, total)
            return True
        finally:
            with contextlib.suppress(Exception):
                await store.release(cluster, fence)
