"""The writer's queue: shards that keep one object's versions in order, and the collecting
of batches over them.

Order: a record goes to shard `xxh64(key, seed=scope) % shards`, so every version of one
object lands in one shard; a shard holds at most one record per (scope, key) (a newer
version replaces an older one still waiting), and is in at most one batch at a time (it
is *busy* until that batch is written). That, not a sender per shard, is what keeps one
object's versions in order.

Batches (design 009, addendum 2): one sender at a time *collects*. It lingers up to
`linger` for a batch's worth of records in shards that are not busy, then takes records
from those shards, the fullest first, up to `batch_size` records of `max_scopes` scopes,
and marks each shard it took from busy; the next sender collects while the first writes.
A quiet fleet thus writes one transaction per linger for the whole instance (a shard per
sender, each lingering on its own, wrote one per shard, each a few records), while a
backlog still spreads over every sender: a shard holding a batch's worth alone is a batch
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol

import xxhash

from ._types import ObjectKey, Record

if TYPE_CHECKING:
    from ._writer import Scope

_NOBODY = 1 << 62
"""`ShardQueue._short` while no collector lingers: arrivals never fill it."""


class BatchLimits(Protocol):
    """The writer's settings a queue reads."""

    senders: int
    batch_size: int
    linger: float
    max_scopes: int


class Shard:
    """Pending records of one shard, at most one per (scope, key), in first-arrival order."""

    def __init__(self) -> None:
        self.pending: dict[tuple[int, ObjectKey], tuple[Scope, Record]] = {}
        self.busy = False
        """A batch holding records of this shard is being written."""

    def take(self, n: int, scopes: int, seen: set[int]) -> list[tuple[Scope, Record]]:
        """The first `n` records in arrival order such that the batch (whose scope ids so
        far are `seen`, updated here) spans at most `scopes` scopes (a store may write each
        scope's group with its own statements: the cap bounds the round trips, and so the
        duration, of one transaction)."""
        keys: list[tuple[int, ObjectKey]] = []
        for looked, key in enumerate(self.pending):
            if key[0] not in seen:
                if len(seen) == scopes:
                    if looked >= 4 * n:  # a bounded look past the cap, not the whole queue
                        break
                    continue
                seen.add(key[0])
            keys.append(key)
            if len(keys) == n:
                break
        return [self.pending.pop(k) for k in keys]


class ShardQueue:
    """The shards of a writer, and the one collector of batches over them."""

    def __init__(self, settings: BatchLimits) -> None:
        self.settings = settings
        self.shards = [Shard() for _ in range(settings.senders)]
        self._collecting = asyncio.Lock()
        """Held by the one sender collecting the next batch."""
        self._ready = asyncio.Event()
        """Records may wait in a shard that is not busy."""
        self._full = asyncio.Event()
        """The collector's batch may have filled (`_short` arrivals came): stop lingering."""
        self._short = _NOBODY
        """Arrivals in shards that are not busy still wanted by a lingering collector."""
        self._hurry = False
        """The last batch was cut by the scope cap, records of its shards left behind:
        collect the next at once."""

    def shard_of(self, sid: int, key: ObjectKey) -> Shard:
        """The shard of `key` of scope `sid` (stable: every version lands in it)."""
        digest = xxhash.xxh64_intdigest(key.encode(), seed=sid)
        return self.shards[digest % len(self.shards)]

    def add(self, shard: Shard, slot: tuple[int, ObjectKey], item: tuple[Scope, Record]
            ) -> None:
        """Put a record in the slot of its shard (`shard_of`), where none waits."""
        shard.pending[slot] = item
        if not shard.busy:
            self.arrived(1)

    def arrived(self, n: int) -> None:
        """`n` records came to shards that are not busy (new, resumed or freed)."""
        self._ready.set()
        self._short -= n
        if self._short <= 0:
            self._full.set()

    def release(self, shards: list[Shard]) -> None:
        """The batch that made `shards` busy is written (or given up)."""
        for shard in shards:
            shard.busy = False
        freed = sum(len(shard.pending) for shard in shards)
        if freed:
            self.arrived(freed)

    async def collect(self) -> tuple[list[tuple[Scope, Record]], list[Shard]]:
        """The next batch and the shards it made busy (`release` them once it is
        written); one sender at a time."""
        async with self._collecting:
            settings = self.settings
            while not any(s.pending and not s.busy for s in self.shards):
                self._ready.clear()
                await self._ready.wait()
            if settings.linger > 0 and not self._hurry:
                # Linger for more, up to a full batch: a transaction's fixed cost (fences,
                # round trips, the commit) is paid once for all it carries, and a quiet
                # fleet's events are a few per cluster per second over many clusters.
                deadline = asyncio.get_running_loop().time() + settings.linger
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        while (short := settings.batch_size - sum(
                                len(s.pending) for s in self.shards if not s.busy)) > 0:
                            self._short = short
                            self._full.clear()
                            await self._full.wait()
                self._short = _NOBODY
            return self._take()

    def _take(self) -> tuple[list[tuple[Scope, Record]], list[Shard]]:
        settings = self.settings
        free = sorted((s for s in self.shards if s.pending and not s.busy),
                      key=lambda s: len(s.pending), reverse=True)
        taken: list[tuple[Scope, Record]] = []
        shards: list[Shard] = []
        seen: set[int] = set()
        for shard in free:
            part = shard.take(settings.batch_size - len(taken), settings.max_scopes, seen)
            if part:
                taken += part
                shard.busy = True
                shards.append(shard)
            if len(taken) == settings.batch_size:
                break
        # Cut by the scope cap, not by the batch's size: what was left was turned away,
        # not waiting for company, so the next batch does not linger for more.
        self._hurry = len(taken) < settings.batch_size and any(s.pending for s in free)
        return taken, shards
