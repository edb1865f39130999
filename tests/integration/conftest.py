from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from reconciler import ReconcilerSettings
from synchronizer.simulator import Simulator

from .harness import Harness, make_store

FAST = ReconcilerSettings(senders=4, batch_size=50, linger=0.005, backoff_initial=0.05,
                          backoff_max=0.5, full_sync_interval=3600, lease_ttl=10)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def harness(sim: Simulator, mysql_dsn: str) -> AsyncIterator[Harness]:
    store = await make_store(mysql_dsn)
    h = Harness(sim=sim, cluster=sim.add_cluster("c1"), store=store, dsn=mysql_dsn,
                settings=FAST)
    await h.populate(300)
    yield h
    await h.stop()
    await store.close()
