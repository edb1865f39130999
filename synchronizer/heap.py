"""The cyclic garbage collector's policy for a long-running instance.

Why it needs one: an instance holds a large, long-lived heap (every assigned cluster's
reconcilers, sources and connections: about 10^6 tracked objects for a fleet of 100,000
pods) while watch events make a steady stream of objects that live a few hundred
milliseconds. CPython runs a full collection whenever the objects promoted since the last
one exceed a quarter of the long-lived heap; a fleet of 200 clusters at about 900 events/s
paid a 250-400 ms pause every 2-3 seconds, each freeing nothing (docs/benchmarks.md,
"Fleet"), and every pause is event-to-row lag for every cluster.

So the heap is frozen (`gc.freeze()`: out of the collector's sight, an O(1) move) at
start-up and whenever it has settled: no full sync running or waiting, the moment after
which the instance's long-lived objects change least. The collector then scans only what
came after. A reference cycle that dies while frozen is not freed by the collector; the
periodic full collection (`collect_every`: unfreeze, collect, freeze again) bounds what such
cycles can hold, at the cost of one full pause per period.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

COLLECT_EVERY = 3600.0
"""Seconds between full collections of the frozen heap."""


class FullSyncSlots(asyncio.Semaphore):
    """The instance's full-sync slots (`sync.max_concurrent_full_syncs`), which also say
    when the last full sync running or waiting has ended: the moment the heap settles."""

    def __init__(self, value: int, settled: Callable[[], None] | None = None) -> None:
        super().__init__(value)
        self._settled = settled
        self.busy = 0
        """Full syncs holding or waiting for a slot."""

    async def acquire(self) -> bool:
        self.busy += 1
        try:
            return await super().acquire()
        except BaseException:
            self._done()
            raise

    def release(self) -> None:
        super().release()
        self._done()

    def _done(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self._settled is not None:
            self._settled()


class HeapKeeper:
    """Freezes the heap when it settles, and collects it in full once a period."""

    def __init__(self, *, collect_every: float = COLLECT_EVERY) -> None:
        self.collect_every = collect_every

    def settled(self) -> None:
        """Collect the young generations (the garbage of what just ended, a few ms), then
        freeze what is left."""
        gc.collect(1)
        gc.freeze()

    def collect(self) -> int:
        """One full collection of everything, frozen included; freeze the survivors."""
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        log.debug("full garbage collection: %d objects freed in %.0f ms", freed,
                  1000 * (time.perf_counter() - started))
        return freed

    async def run(self) -> None:
        """Collect in full every `collect_every` seconds, forever."""
        while True:
            await asyncio.sleep(self.collect_every)
            self.collect()
