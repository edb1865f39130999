"""Fixtures of the registries suite: the simulator with a home cluster (the SyncCluster
CRD, namespace `bkcmdb`, a bearer token) and two target clusters with a few pods, and a
client of the home cluster for SyncClusters and Secrets."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from registries_support import PODS, Home, make_home

from synchronizer.simulator import Simulator, populate


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    make_home(simulator)
    for n, cluster_id in enumerate(("c1", "c2")):
        await populate(simulator.add_cluster(cluster_id), pods=PODS, namespaces=2,
                       workloads=3, annotated_fraction=0.5, rng=random.Random(n))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def home(sim: Simulator) -> AsyncIterator[Home]:
    client = Home(sim, sim.cluster("home"))
    try:
        yield client
    finally:
        await client.aclose()
