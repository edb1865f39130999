"""SyncCluster resources, end to end: kopf embedded in a real instance against the
simulated home cluster, real HTTP, a real CMDB (MariaDB).

Create → the cluster is assigned, synced, and its status says who owns it, Running,
Ready/Synced, the pod count and the last full sync; a spec change bumps the generation
and restarts the cluster with the new spec; `paused` stops it and keeps its rows;
deleting the resource stops the cluster, and the finalizer holds the resource until it
is stopped; a bad spec (TEST-MATRIX row 42: no bizId, a missing Secret, an unreachable
server) sets Ready False with a reason naming the problem and never stops the others.
"""

from __future__ import annotations

from typing import Any

from registries_support import (
    FINALIZER,
    PODS,
    Home,
    active_rows,
    rows,
    running,
    settings_for,
    until,
)

from reconciler import ClusterId
from synchronizer.simulator import Simulator


def events_of(home: Home, name: str) -> list[dict[str, Any]]:
    return [e["object"] for e in home.cluster.truth("events", objects=True)
            if e["object"]["involvedObject"]["name"] == name]


async def test_create_change_pause_resume_and_delete(sim: Simulator, home: Home,
                                                     mysql_dsn: str) -> None:
    async with running(settings_for(sim, mysql_dsn)) as instance:
        await home.create("cluster-a", {"clusterId": "c1", "bizId": 3,
                                        "server": sim.url_for("c1")})
        status = await home.until_status("cluster-a", state="Running", reason="Synced",
                                         ready="True", pods=PODS)
        assert status["owner"] == "sync-a" and status["observedGeneration"] == 1
        assert status["lastFullSync"].endswith("Z")
        assert FINALIZER in home.get("cluster-a")["metadata"]["finalizers"]
        assert {r["biz_id"] for r in await rows(mysql_dsn, "c1")} == {3}
        doc = await instance.status()
        assert [(c["id"], c["origin"]) for c in doc["clusters"]] == [("c1", "crd")]
        first = instance.controller.supervisor(ClusterId("c1"))

        await home.patch("cluster-a", {"bizId": 4})  # generation 2: a new spec, a restart
        await home.until_status("cluster-a", observedGeneration=2, reason="Synced")
        await until(lambda: instance.controller.supervisor(ClusterId("c1")) not in (None, first))
        supervisor = await instance.controller.wait_running(ClusterId("c1"))
        await supervisor.wait_synced()
        assert {r["biz_id"] for r in await rows(mysql_dsn, "c1")} == {4}

        await home.patch("cluster-a", {"paused": True})
        await home.until_status("cluster-a", state="Paused", reason="Paused", ready="False",
                                observedGeneration=3)
        await until(lambda: ClusterId("c1") not in instance.controller.clusters)
        assert (await instance.status())["held"] == {"c1": "Paused: spec.paused is true"}
        assert (await active_rows(mysql_dsn, "c1"))["pods"] == PODS  # rows kept

        await home.patch("cluster-a", {"paused": False})
        await home.until_status("cluster-a", state="Running", reason="Synced",
                                observedGeneration=4)

        await home.delete("cluster-a")
        deleting = home.get("cluster-a")
        assert deleting is not None and deleting["metadata"]["deletionTimestamp"]
        await home.until(lambda: home.get("cluster-a") is None)
        assert ClusterId("c1") not in instance.controller.clusters  # stopped before release
        assert (await active_rows(mysql_dsn, "c1"))["pods"] == PODS  # `keep`: rows stay
        await until(lambda: "c1" in instance.setup.removal.removed)  # recorded, rows kept
        assert (await active_rows(mysql_dsn, "c1"))["pods"] == PODS


async def test_a_bad_spec_says_why_and_never_stops_the_others(sim: Simulator, home: Home,
                                                              mysql_dsn: str) -> None:
    """TEST-MATRIX row 42."""
    async with running(settings_for(sim, mysql_dsn)) as instance:
        await home.create("good", {"clusterId": "c2", "bizId": 2, "server": sim.url_for("c2")})
        await home.until_status("good", reason="Synced")
        good = instance.controller.supervisor(ClusterId("c2"))

        await home.create("no-biz", {"clusterId": "c9", "server": sim.url_for("c1")})
        await home.create("no-secret", {"clusterId": "c1", "bizId": 2,
                                        "server": sim.url_for("c1"),
                                        "tokenSecret": {"name": "c1-token"}})
        await home.create("unreachable", {"clusterId": "c8", "bizId": 2,
                                          "server": "http://127.0.0.1:9"})

        status = await home.until_status("no-biz", state="Error", reason="InvalidSpec",
                                         ready="False")
        assert "spec.bizId is required" in home.ready("no-biz")["message"]
        assert status["observedGeneration"] == 1
        await home.until(lambda: any(e["reason"] == "InvalidSpec"
                                     for e in events_of(home, "no-biz")))
        await home.until_status("no-secret", state="Error", reason="SecretNotFound")
        assert "Secret bkcmdb/c1-token not found" in home.ready("no-secret")["message"]
        await home.until_status("unreachable", reason="Unreachable", ready="False")
        assert "127.0.0.1:9" in home.ready("unreachable")["message"]
        doc = await instance.status()
        assert doc["held"] == {"c9": "InvalidSpec: spec.bizId is required"}
        assert "c9" not in doc.get("assignments", {})

        # the good cluster never noticed: same supervisor, still synced
        assert instance.controller.supervisor(ClusterId("c2")) is good
        assert home.ready("good")["reason"] == "Synced"

        # fixed: the Secret appears, the spec gets its bizId
        await home.secret("c1-token", {"token": "anything"})
        await home.until_status("no-secret", state="Running", reason="Synced")
        await home.patch("no-biz", {"bizId": 7, "clusterId": "c1x",
                                    "server": sim.url_for("c1")})
        await home.until_status("no-biz", state="Running", reason="Synced",
                                observedGeneration=2)
        assert instance.controller.supervisor(ClusterId("c2")) is good


async def test_deleting_with_on_cluster_removed_delete_soft_deletes_before_release(
        sim: Simulator, home: Home, mysql_dsn: str) -> None:
    settings = settings_for(sim, mysql_dsn, on_cluster_removed="delete")
    async with running(settings) as instance:
        await home.create("kept", {"clusterId": "c1", "bizId": 2, "server": sim.url_for("c1")})
        await home.create("gone", {"clusterId": "c2", "bizId": 2, "server": sim.url_for("c2")})
        await home.until_status("kept", reason="Synced")
        await home.until_status("gone", reason="Synced")
        before = {r["uid"]: r["resource_version"] for r in await rows(mysql_dsn, "c2")}
        assert (await active_rows(mysql_dsn, "c2"))["pods"] == PODS

        await home.patch("kept", {"paused": True})  # held: still declared, never touched
        await home.until_status("kept", state="Paused")
        await home.delete("gone")
        await home.until(lambda: home.get("gone") is None)
        # the finalizer was released only after every row of every kind was soft-deleted
        assert set((await active_rows(mysql_dsn, "c2")).values()) == {0}
        after = await rows(mysql_dsn, "c2")
        assert {r["state"] for r in after} == {"Deleted"}
        assert {r["uid"]: r["resource_version"] for r in after} == before  # at their versions
        assert instance.setup.removal.removed == ["c2"]
        counts = await active_rows(mysql_dsn, "c1")
        assert counts["pods"] == PODS and all(counts.values())


async def test_a_deletion_made_while_no_instance_runs_is_carried_out_later(
        sim: Simulator, home: Home, mysql_dsn: str) -> None:
    settings = settings_for(sim, mysql_dsn, on_cluster_removed="delete")
    async with running(settings):
        await home.create("gone", {"clusterId": "c2", "bizId": 2, "server": sim.url_for("c2")})
        await home.until_status("gone", reason="Synced")
    await home.delete("gone")
    assert home.get("gone")["metadata"]["deletionTimestamp"]  # held by the finalizer
    assert (await active_rows(mysql_dsn, "c2"))["pods"] == PODS
    async with running(settings) as instance:
        await home.until(lambda: home.get("gone") is None)
        assert (await active_rows(mysql_dsn, "c2"))["pods"] == 0
        assert ClusterId("c2") not in instance.controller.clusters
