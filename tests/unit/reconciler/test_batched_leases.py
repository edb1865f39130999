"""`BatchedLeases`: acquisitions made together go to the store as one call."""

from __future__ import annotations

import asyncio

import pytest

from reconciler import BatchedLeases, Fence, StoreError
from reconciler._leases import next_beat
from reconciler.testing import MemoryStore

A, B = Fence(owner="a", epoch=1), Fence(owner="b", epoch=2)


async def test_acquisitions_made_together_are_one_store_call() -> None:
    store = MemoryStore()
    await store.acquire("taken", B, 30)
    leases = BatchedLeases(store)
    held = await asyncio.gather(*(leases.acquire(f"c{n}", A, 30) for n in range(50)),
                                leases.acquire("taken", A, 30))
    assert held == [True] * 50 + [False]
    assert store.lease_calls == 1
    assert store.holder("c7") == A and store.holder("taken") == B


async def test_a_failed_call_fails_every_acquisition_in_it() -> None:
    class Failing(MemoryStore):
        async def acquire_many(self, requests, ttl):  # type: ignore[no-untyped-def]
            raise StoreError("database is down")

    leases = BatchedLeases(Failing())
    results = await asyncio.gather(leases.acquire("c1", A, 30), leases.acquire("c2", A, 30),
                                   return_exceptions=True)
    assert [str(r) for r in results] == ["database is down"] * 2


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    store = MemoryStore()
    leases = BatchedLeases(store)
    gone = asyncio.ensure_future(leases.acquire("c1", A, 30))
    kept = asyncio.ensure_future(leases.acquire("c2", A, 30))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_store_without_batches_is_asked_one_lease_at_a_time() -> None:
    class Single:
        def __init__(self) -> None:
            self.inner = MemoryStore()

        async def acquire(self, cluster, fence, ttl):  # type: ignore[no-untyped-def]
            return await self.inner.acquire(cluster, fence, ttl)

        async def release(self, cluster, fence):  # type: ignore[no-untyped-def]
            await self.inner.release(cluster, fence)

    leases = BatchedLeases(Single())  # type: ignore[arg-type]
    assert await asyncio.gather(leases.acquire("c1", A, 30), leases.acquire("c2", A, 30)) \
        == [True, True]
    assert leases.calls == 2


def test_every_cluster_renews_on_the_same_beat() -> None:
    """Supervisors started at different moments wake at the same instants."""
    beats = {round(now + next_beat(now, 10.0), 9) for now in (100.0, 101.5, 104.2, 109.99)}
    assert beats == {110.0}
    assert next_beat(110.0, 10.0) == 10.0  # on a beat: the next one, never zero
