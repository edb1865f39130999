"""Key-sharded, key-coalescing queues: the hand-off between producers and senders.

A record goes to shard `xxh64(key) % n` — a stable hash, never Python's salted `hash()` —
so every version of one key lands in one shard and is written in order, while different
keys are written in parallel. Inside a shard, a key waits at most once: a newer version
replaces an older one still waiting (the store would refuse the older one anyway), which
is what keeps memory bounded by the number of distinct keys, not the number of events.
A full shard makes producers wait (back-pressure reaches the watch stream and the list),
instead of growing without bound. A shard whose sender is gone is closed: a producer
waiting on it (or arriving later) gets `QueueClosed` at once instead of waiting forever for
room that will never come — no cleanup path may wait on a part that is already dead.
"""

from __future__ import annotations

import asyncio
from itertools import islice

import xxhash

from ._errors import QueueClosed
from ._types import ObjectKey, Record


def shard_of(key: ObjectKey, shards: int) -> int:
    """The shard of `key`: stable across processes and runs."""
    return xxhash.xxh64_intdigest(key.encode()) % shards


class ShardQueue:
    """Pending records of one shard, at most one per key, in first-arrival order."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._pending: dict[ObjectKey, Record] = {}
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._closed = False
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._pending)

    async def put(self, record: Record) -> None:
        """Queue `record`, replacing an older waiting version of its key; wait while full."""
        key = record.key
        while key not in self._pending and len(self._pending) >= self._capacity:
            if self._closed:
                raise QueueClosed("the sender of this shard is gone")
            self._not_full.clear()
            await self._not_full.wait()
        if self._closed:
            raise QueueClosed("the sender of this shard is gone")
        waiting = self._pending.get(key)
        if waiting is not None:
            self.coalesced += 1
            if waiting.version > record.version:
                return
        self._pending[key] = record
        self._not_empty.set()

    def close(self) -> None:
        """Refuse further records and wake every waiting producer (they get `QueueClosed`)."""
        self._closed = True
        self._not_full.set()

    async def wait(self) -> None:
        """Return once at least one record waits."""
        while not self._pending:
            self._not_empty.clear()
            await self._not_empty.wait()

    def take(self, n: int) -> list[Record]:
        """Remove and return up to `n` records, oldest keys first."""
        keys = list(islice(self._pending, n))
        batch = [self._pending.pop(k) for k in keys]
        if len(self._pending) < self._capacity:
            self._not_full.set()
        return batch
