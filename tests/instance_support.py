"""An in-process instance against the simulator, for suites that test the whole service.

`running` starts a real `Instance` (standalone, ports chosen by the OS) and stops it
gracefully on exit; `caught_up` awaits every kind of every cluster having written the
cluster's latest version (the engine's own `caught_up`, never a sleep).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from pydantic import SecretStr

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.settings import (
    ClusterSettings,
    CmdbSettings,
    InstanceSettings,
    Settings,
    SyncSettings,
)
from synchronizer.simulator import Mix, SimCluster, Simulator, populate

BIZ_ID = 5


async def populated(sim: Simulator, cluster_id: str, pods: int, seed: int = 3, *,
                    nodes: int = 0, workloads: int = 0, mix: Mix | None = None) -> SimCluster:
    """Add a cluster to the simulator with `pods` realistic Pods (and, when asked, the
    nodes and workloads that own them)."""
    cluster = sim.add_cluster(cluster_id)
    await populate(cluster, pods=pods, namespaces=3, annotated_fraction=0.5,
                   rng=random.Random(seed), nodes=nodes, workloads=workloads, mix=mix)
    return cluster


def settings_for(sim: Simulator, dsn: str, clusters: Sequence[str]) -> Settings:
    """Standalone settings for these simulated clusters; ports 0 (the OS picks)."""
    return Settings.model_construct(
        instance=InstanceSettings.model_construct(id="test", address="127.0.0.1", port=0,
                                                  metric_port=0),
        zookeeper=None,
        cmdb=CmdbSettings.model_construct(dsn=SecretStr(dsn)),
        sync=SyncSettings(),
        clusters=[ClusterSettings(id=c, biz_id=BIZ_ID, server=sim.url_for(c)) for c in clusters],
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Instance]:
    """A started instance; stopped gracefully on exit."""
    instance = Instance(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(instance.run(stop))
    try:
        yield instance
    finally:
        stop.set()
        await task


async def caught_up(instance: Instance, sim: Simulator, clusters: Sequence[str]) -> None:
    """Await every kind of every cluster having written the cluster's latest version.

    One revision counter orders all kinds, so a kind that saw no change still passes the
    latest version on its next bookmark.
    """
    async with asyncio.timeout(60):
        for cluster_id in clusters:
            cluster = sim.cluster(cluster_id)
            supervisor = await instance.controller.wait_owned(ClusterId(cluster_id))
            await supervisor.wait_synced()
            for reconciler in supervisor.reconcilers.values():
                await reconciler.caught_up(cluster.resource_version)


async def sync_once(sim: Simulator, dsn: str, clusters: Sequence[str]) -> None:
    """Run an instance until it has caught up with every cluster, then stop it."""
    async with running(settings_for(sim, dsn, clusters)) as instance:
        await caught_up(instance, sim, clusters)
