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

While full syncs run, the heap grows fast (every synced row's record, index entry and
metric series): CPython's rule then runs a full collection each time the heap grows by a
quarter, each rescanning everything, and a fleet's first sync spent about a fifth of its
time in them (200 clusters x 500 pods: 8.5-8.9 s with the collector off against 9.9-12 s
on; one cluster of 100,000 pods: 6.7 against 7.1 s). So the heap is also frozen as full
syncs end while others still run (`progressed`), at most once per `FREEZE_EVERY`: what a
full collection can find is then at most that long's allocations.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Protocol

log = logging.getLogger(__name__)

COLLECT_EVERY = 3600.0
"""Seconds between full collections of the frozen heap."""
FREEZE_EVERY = 0.5
"""Seconds between two freezes while full syncs keep running (`HeapKeeper.progressed`)."""
YOUNG = 20_000
"""Allocations (net of frees) between two collections of the youngest generation;
CPython's default is 700. With the long-lived heap frozen, a young collection scans only
what came since, most of it the live records and batches of the moment, rescanned at every
collection until they die: at 700, a fleet at 400 events/s spent 5-8 µs of CPU per event
in them (docs/benchmarks.md, "Fifth pass"). The garbage they exist for, reference cycles,
is rare in this process and waits a little longer."""


class Keeper(Protocol):
    """What the full-sync slots tell the heap's keeper."""

    def settled(self) -> None:
        """The last full sync running or waiting has ended."""

    def progressed(self) -> None:
        """One full sync has ended while others run or wait."""


class FullSyncSlots(asyncio.Semaphore):
    """The instance's full-sync slots (`sync.max_concurrent_full_syncs`), which also tell
    the heap's keeper when a full sync ends, and when the last one running or waiting has
    ended: the moment the heap settles."""

    def __init__(self, value: int, keeper: Keeper | None = None) -> None:
        super().__init__(value)
        self._keeper = keeper
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
        if self._keeper is not None:
            if self.busy == 0:
                self._keeper.settled()
            else:
                self._keeper.progressed()


class HeapKeeper:
    """Freezes the heap when it settles, and collects it in full once a period."""

    def __init__(self, *, collect_every: float = COLLECT_EVERY,
                 freeze_every: float = FREEZE_EVERY, young: int = YOUNG) -> None:
        self.collect_every = collect_every
        self.freeze_every = freeze_every
        self.young = young
        self._frozen_at = float("-inf")

    def start(self) -> None:
        """Take the collector over: the young generation's threshold (`YOUNG`), and the
        heap built so far frozen (it lives as long as the process)."""
        gc.set_threshold(self.young, *gc.get_threshold()[1:])
        self.settled()

    def settled(self) -> None:
        """Collect the young generations (the garbage of what just ended, a few ms), then
        freeze what is left."""
        gc.collect(1)
        gc.freeze()
        self._frozen_at = time.monotonic()

    def progressed(self) -> None:
        """Freeze what the full syncs built so far, unless the last freeze is under
        `freeze_every` old. Without a young collection first, unlike `settled`: in a
        fleet's first sync (200 clusters x 500 pods) the 27 collections this made freed
        no object at all and took 0.41 s, because all they scan is the records and index
        entries just built, alive. A cycle that did die among them waits, frozen, for the
        next full collection (`collect`)."""
        if time.monotonic() - self._frozen_at >= self.freeze_every:
            gc.freeze()
            self._frozen_at = time.monotonic()

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
