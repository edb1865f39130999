"""A master fail-over while SyncClusters change: two instances, real ZooKeeper, MariaDB.

The master runs the only kopf operator and writes the statuses. It is stopped while
SyncClusters are created, changed and deleted; the other instance is elected, its
operator picks every change up (nothing lost: created ones run, the changed one runs its
new spec, the deleted one's finalizer is released), and every status names the new
owner. At every moment there is at most one SyncCluster watch open on the home cluster
(one watcher), and at the end exactly one.
"""

from __future__ import annotations

import asyncio
import uuid

from registries_support import GUARD, PLURAL, Home, rows, running, settings_for, until
from zkserver import ZkServer

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.simulator import Simulator


def sc_watches(home: Home) -> int:
    return sum(1 for w in home.cluster.streams if w.resource.startswith(PLURAL))


async def test_a_new_master_picks_up_what_changed_during_the_failover(
        sim: Simulator, home: Home, mysql_dsn: str, zk_server: ZkServer) -> None:
    root = f"/t-{uuid.uuid4().hex[:12]}"
    common = {"zk": zk_server.hosts, "zk_root": root, "pull_interval": 0.5}
    watches: list[int] = []

    async def count_watches() -> None:
        while True:
            watches.append(sc_watches(home))
            await home.cluster.wait_until(lambda: sc_watches(home) != watches[-1])

    counter = asyncio.create_task(count_watches())
    stop_a = asyncio.Event()
    a = Instance(settings_for(sim, mysql_dsn, instance="sync-a", **common))
    a_task = asyncio.create_task(a.run(stop_a))
    try:
        await until(lambda: a.coordinator.status().master)
        async with running(settings_for(sim, mysql_dsn, instance="sync-b", **common)) as b:
            await until(lambda: set(b.coordinator.status().members) == {"sync-a", "sync-b"})
            await home.create("x", {"clusterId": "c1", "bizId": 3, "server": sim.url_for("c1")})
            await home.create("z", {"clusterId": "c9", "bizId": 3, "server": sim.url_for("c2")})
            await home.until_status("x", reason="Synced")
            await home.until_status("z", reason="Synced")

            stop_a.set()  # the master stands down; meanwhile SyncClusters change
            await home.create("y", {"clusterId": "c2", "bizId": 5, "server": sim.url_for("c2")})
            await home.patch("x", {"bizId": 4})
            await home.delete("z")
            async with asyncio.timeout(GUARD):
                await a_task
            await until(lambda: b.coordinator.status().master)

            await home.until_status("y", reason="Synced", owner="sync-b")
            await home.until_status("x", reason="Synced", owner="sync-b", observedGeneration=2)
            await home.until(lambda: home.get("z") is None)
            for cluster in ("c1", "c2"):
                supervisor = await b.controller.wait_owned(ClusterId(cluster))
                await supervisor.wait_synced()
            assert {r["biz_id"] for r in await rows(mysql_dsn, "c1")} == {4}
            assert set(b.controller.clusters) == {"c1", "c2"}
            assert b.setup.removal is not None and "c9" in b.setup.removal.removed
            await home.cluster.wait_until(lambda: sc_watches(home) == 1)
            assert max(watches) == 1  # never two operators watching at once
    finally:
        stop_a.set()
        await asyncio.gather(a_task, return_exceptions=True)
        counter.cancel()
