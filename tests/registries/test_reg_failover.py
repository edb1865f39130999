"""Two instances on real ZooKeeper and MariaDB: a master fail-over while SyncClusters
change, and the admin API answered by a member that is not master.

The master runs the only kopf operator and writes the statuses. It is stopped while
SyncClusters are created, changed and deleted; the other instance is elected, its
operator picks every change up (nothing lost: created ones run, the changed one runs its
new spec, the deleted one's finalizer is released), and every status names the new
owner. At every moment there is at most one SyncCluster watch open on the home cluster
(one watcher), and at the end exactly one.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
from registries_support import (
    ADMIN_TOKEN,
    GUARD,
    PLURAL,
    PODS,
    Home,
    rows,
    running,
    settings_for,
    until,
)
from zkserver import ZkServer

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.coordination import assign
from synchronizer.simulator import Simulator, populate


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


def split_ids() -> tuple[str, str]:
    """A topology cluster and a SyncCluster cluster that the ring gives to sync-b."""
    for n in range(200):
        pair = (f"topo-{n}", f"sc-{n}")
        if set(assign(pair, ["sync-a", "sync-b"]).values()) == {"sync-b"}:
            return pair
    raise AssertionError("no pair of ids lands on sync-b")


async def test_any_instance_answers_and_every_member_resolves_its_secrets(
        sim: Simulator, home: Home, mysql_dsn: str, zk_server: ZkServer) -> None:
    """The admin API on a member that is not master; a topology's and a SyncCluster's
    clusters, both needing a token, owned by that member: it resolves the topology token
    from the CMDB and the SyncCluster's Secret through the home cluster."""
    topo, sc = split_ids()
    for n, cid in enumerate((topo, sc)):
        await populate(sim.add_cluster(cid, token=f"{cid}-token"), pods=PODS, rng=random.Random(n))
    await home.secret("sc-token", {"token": f"{sc}-token"})
    common = {"zk": zk_server.hosts, "zk_root": f"/t-{uuid.uuid4().hex[:12]}",
              "pull_interval": 3600}
    async with running(settings_for(sim, mysql_dsn, instance="sync-a", **common)) as a:
        await until(lambda: a.coordinator.status().master)
        async with running(settings_for(sim, mysql_dsn, instance="sync-b", **common)) as b, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.http.bound[0]}", timeout=60,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            await until(lambda: set(a.coordinator.status().members) == {"sync-a", "sync-b"})
            reply = await admin.put("/v1/topologies/t1", json={"clusters": [
                {"id": topo, "biz_id": 4, "server": sim.url_for(topo), "token": f"{topo}-token"}]})
            assert reply.status_code == 200 and reply.json()["deployed"], reply.text
            assert reply.json()["clusters"][0]["owner"] == "sync-b"
            await home.create("s", {"clusterId": sc, "bizId": 4, "server": sim.url_for(sc),
                                    "tokenSecret": {"name": "sc-token"}})
            await home.until_status("s", reason="Synced", owner="sync-b")
            for cid in (topo, sc):
                supervisor = await b.controller.wait_owned(ClusterId(cid))
                await supervisor.wait_synced()
            assert not a.controller.clusters
            one = (await admin.get("/v1/topologies/t1")).json()["clusters"][0]
            assert (one["owner"], one["state"]) == ("sync-b", "watching")
            assert f"{topo}-token" not in str(await a.status()) + str(await b.status())
            session, root = a.coordinator.session, common["zk_root"]
            texts = []
            for path in (f"{root}/assignment", f"{root}/summaries/sync-a",
                         f"{root}/summaries/sync-b"):
                data, _ = await session.call(session.client.get_async, path)
                texts.append(data.decode())
            assert topo in texts[0] and sc in texts[0] and sc in texts[2]
            assert not any(f"{c}-token" in t for c in (topo, sc) for t in texts)  # references
