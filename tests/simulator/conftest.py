"""Fixtures of the simulator's tests: a started simulator with clusters `default` and `c1`,
and an httpx client on `c1` (the test modules of the first version define their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from synchronizer.simulator import SimCluster, Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    simulator.add_cluster("default")
    simulator.add_cluster("c1")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def c1(sim: Simulator) -> SimCluster:
    return sim.cluster("c1")


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url_for("c1"), timeout=10) as http:
        yield http
