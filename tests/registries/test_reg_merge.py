"""Registries merged: conflicts, outages and moves, end to end.

- TEST-MATRIX row 44: the same cluster id from the static config and a SyncCluster (and
  from two SyncClusters) is reported for that id, resolved by the fixed precedence, and
  nothing flaps: the winner's reconcilers are never restarted while pulls go on.
- TEST-MATRIX row 43: the home API server unreachable for longer than the pull interval
  keeps the last good answer; no cluster is stopped, no row touched (even with
  `on_cluster_removed: delete`).
- A cluster moving between registries with the same connection keeps its reconcilers.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from registries_support import (
    ADMIN_TOKEN,
    PODS,
    Home,
    active_rows,
    health,
    running,
    settings_for,
    until,
)
from tcpproxy import TcpProxy

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.settings import ClusterSettings
from synchronizer.simulator import Simulator


async def pulls(instance: Instance, n: int) -> None:
    """Wait until `n` more registry pulls have finished."""
    target = instance.pull.generation + n
    await until(lambda: instance.pull.generation >= target)


async def test_the_same_id_from_two_registries_is_reported_and_never_flaps(
        sim: Simulator, home: Home, mysql_dsn: str) -> None:
    """TEST-MATRIX row 44."""
    settings = settings_for(sim, mysql_dsn, pull_interval=0.2, clusters=[
        ClusterSettings(id="c1", biz_id=1, server=sim.url_for("c1"))])
    async with running(settings) as instance:
        winner = await instance.controller.wait_owned(ClusterId("c1"))
        await home.create("dup", {"clusterId": "c1", "bizId": 9, "server": sim.url_for("c2")})
        await home.create("first", {"clusterId": "c2", "bizId": 2, "server": sim.url_for("c2")})
        await home.until_status("first", reason="Synced")
        await home.create("second", {"clusterId": "c2", "bizId": 3,
                                     "server": sim.url_for("c1")})
        await home.until_status("dup", state="Error", reason="Conflict", ready="False")
        assert home.ready("dup")["message"] == (
            "cluster c1 is declared by both static and crd; using static")
        await home.until_status("second", state="Error", reason="Conflict")
        assert home.ready("second")["message"] == (
            "cluster c2 is declared by SyncClusters bkcmdb/first and bkcmdb/second;"
            " using bkcmdb/first")
        c2 = instance.controller.supervisor(ClusterId("c2"))
        await pulls(instance, 5)  # no flapping over many pulls
        doc = await instance.status()
        assert set(doc["conflicts"]) == {"c1", "c2"}
        assert {c["id"]: (c["origin"], c["restarts"]) for c in doc["clusters"]} == {
            "c1": ("static", 0), "c2": ("crd", 0)}
        assert instance.controller.supervisor(ClusterId("c1")) is winner
        assert instance.controller.supervisor(ClusterId("c2")) is c2
        assert home.ready("first")["reason"] == "Synced"

        await home.delete("dup")  # the conflict goes away with the loser
        await until(lambda: "c1" not in instance.pull.conflicts)
        assert instance.controller.supervisor(ClusterId("c1")) is winner


async def test_an_unreachable_home_cluster_keeps_the_last_good_answer(
        sim: Simulator, home: Home, mysql_dsn: str) -> None:
    """TEST-MATRIX row 43, for the SyncCluster registry (tests/registries/test_reg_bcs.py
    has the BCS registry's)."""
    proxy = await TcpProxy("127.0.0.1", int(sim.port or 0)).start()
    settings = settings_for(sim, mysql_dsn, pull_interval=0.2, on_cluster_removed="delete",
                            home_url=f"http://{proxy.address}/clusters/home")
    try:
        async with running(settings) as instance:
            await home.create("a", {"clusterId": "c1", "bizId": 2, "server": sim.url_for("c1")})
            await home.until_status("a", reason="Synced")
            supervisor = instance.controller.supervisor(ClusterId("c1"))
            port = proxy.port
            await proxy.close()  # the home API server is gone: connections refused
            await until(lambda: bool(health(instance, "crd").last_error))
            await pulls(instance, 5)
            shown = {h["origin"]: h for h in (await instance.status())["registries"]}
            assert "home cluster" in shown["crd"]["last_error"]
            assert shown["crd"]["clusters"] == 1
            assert instance.controller.supervisor(ClusterId("c1")) is supervisor
            assert instance.setup.removal.removed == []
            assert (await active_rows(mysql_dsn, "c1"))["pods"] == PODS
            proxy = await TcpProxy("127.0.0.1", int(sim.port or 0), port=port).start()
            await until(lambda: health(instance, "crd").last_error is None)
            await home.patch("a", {"bizId": 4})  # the operator is back too
            await home.until_status("a", observedGeneration=2, reason="Synced")
    finally:
        await proxy.close()


@pytest.mark.parametrize("mode", ["standalone", "zookeeper"])
async def test_a_cluster_moves_between_registries_without_a_restart(
        sim: Simulator, home: Home, mysql_dsn: str, mode: str,
        request: pytest.FixtureRequest) -> None:
    zk = {}
    if mode == "zookeeper":
        zk = {"zk": request.getfixturevalue("zk_server").hosts,
              "zk_root": f"/t-{uuid.uuid4().hex[:12]}"}
    async with running(settings_for(sim, mysql_dsn, **zk)) as instance, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{instance.http.bound[0]}", timeout=60,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        reply = await admin.put("/v1/topologies/t1", json={"clusters": [
            {"id": "c2", "biz_id": 5, "server": sim.url_for("c2")}]})
        assert reply.status_code == 200 and reply.json()["deployed"], reply.text
        supervisor = await instance.controller.wait_running(ClusterId("c2"))
        await supervisor.wait_synced()
        syncs = {k: r.status.full_syncs for k, r in supervisor.reconcilers.items()}

        def origin() -> str | None:
            spec = instance.controller.clusters[ClusterId("c2")].assigned.spec
            return str(spec.origin) if spec else None

        await home.create("c2", {"bizId": 5, "server": sim.url_for("c2")})  # crd wins
        await until(lambda: origin() == "crd")
        await home.until_status("c2", reason="Synced", owner="sync-a")
        assert (await admin.delete("/v1/topologies/t1")).json()["deleted"] is True
        await until(lambda: "c2" not in instance.pull.conflicts)
        running_now = instance.controller.clusters[ClusterId("c2")]
        assert running_now.supervisor is supervisor and running_now.restarts == 0
        assert {k: r.status.full_syncs for k, r in supervisor.reconcilers.items()} == syncs
        doc = await instance.status()
        assert [(c["id"], c["origin"]) for c in doc["clusters"]] == [("c2", "crd")]
