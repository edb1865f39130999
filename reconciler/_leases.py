"""`BatchedLeases`: many clusters' lease renewals in one store call.

Why: an instance of a fleet holds a lease per cluster and renews each every third of its
lifetime. One transaction per renewal was a tenth of an idle 200-cluster instance's CPU
(four round trips each, twenty a second), for statements a store can run for hundreds of
clusters at once. So supervisors renew on a shared beat (`next_beat`: the same instants
of the loop clock for every cluster) and the acquisitions that arrive within `window` of
each other go to the store as one `acquire_many`. A store without it is asked cluster by
cluster, as before.

The rule is the store's (`reconciler.Leases.acquire`), row by row; batching changes only
how many rows one call carries. A failure of the call fails every acquisition in it, and
each supervisor handles it as it would its own (a renewal error is noted and retried at
the next beat, well inside the lease's lifetime).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ._protocols import Leases
from ._types import ClusterId, Fence

WINDOW = 0.01
"""Seconds acquisitions are gathered before one call takes them all."""
MAX_BATCH = 500
"""Most leases in one store call (a statement's size stays bounded)."""


@runtime_checkable
class LeaseBatch(Protocol):
    """A store that takes or renews many leases in one call."""

    async def acquire_many(self, requests: Sequence[tuple[ClusterId, Fence]],
                           ttl: float) -> list[bool]:
        """`Leases.acquire` for each request, in order, in one transaction."""
        ...


def next_beat(now: float, period: float) -> float:
    """Seconds from `now` to the next multiple of `period` of the loop clock: supervisors
    that renew on it renew together, so their renewals batch."""
    return period - now % period


class BatchedLeases:
    """`Leases` over a store, gathering concurrent acquisitions into batches."""

    def __init__(self, store: Leases, *, window: float = WINDOW) -> None:
        self.store = store
        self.window = window
        self._batch = store if isinstance(store, LeaseBatch) else None
        self._pending: list[tuple[ClusterId, Fence, float, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.calls = 0
        """Store calls made (tests and benchmarks read how well acquisitions batched)."""

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """Take or renew `cluster`'s lease (see `reconciler.Leases.acquire`)."""
        if self._batch is None:
            self.calls += 1
            return await self.store.acquire(cluster, fence, ttl)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((cluster, fence, ttl, future))
        if self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return await future

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """Expire the lease if `fence` holds it (one at a time: releases are rare)."""
        await self.store.release(cluster, fence)

    def _flush(self) -> None:
        self._timer = None
        pending, self._pending = self._pending, []
        by_ttl: dict[float, list[tuple[ClusterId, Fence, asyncio.Future[bool]]]] = {}
        for cluster, fence, ttl, future in pending:
            if not future.done():  # its supervisor was cancelled meanwhile
                by_ttl.setdefault(ttl, []).append((cluster, fence, future))
        for ttl, requests in by_ttl.items():
            for start in range(0, len(requests), MAX_BATCH):
                task = asyncio.ensure_future(self._call(requests[start:start + MAX_BATCH], ttl))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _call(self, requests: list[tuple[ClusterId, Fence, asyncio.Future[bool]]],
                    ttl: float) -> None:
        assert self._batch is not None
        self.calls += 1
        try:
            held = await self._batch.acquire_many([(c, f) for c, f, _ in requests], ttl)
        except BaseException as exc:  # every waiter gets the call's failure as its own
            for _, _, future in requests:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), ok in zip(requests, held, strict=True):
            if not future.done():
                future.set_result(ok)
