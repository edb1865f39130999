"""The BCS cluster manager as a registry, end to end: the simulated cluster manager and
gateway (real envelope, bearer token, the Kubernetes proxy), a real instance, MariaDB.

Running k8s clusters that are not virtual are synced through the gateway with its token;
a cluster briefly not RUNNING is stopped and never wiped, even with
`sync.on_cluster_removed: delete`, then resumes; an unreachable cluster manager keeps the
last good answer (TEST-MATRIX row 43): nothing is stopped; a cluster that leaves the
list is stopped and - with `delete` - its rows soft-deleted.
"""

from __future__ import annotations

import random

from registries_support import PODS, active_rows, rows, running, settings_for, until

from reconciler import ClusterId
from synchronizer.simulator import Simulator, populate

TOKEN = "gateway-token"
A, B = "BCS-K8S-40001", "BCS-K8S-40002"


async def test_bcs_clusters_run_pause_while_not_running_and_survive_outages(
        sim: Simulator, mysql_dsn: str) -> None:
    sim.bcs.token = TOKEN
    for n, cid in enumerate((A, B)):
        await populate(sim.add_bcs_cluster(cid, businessID="7"), pods=PODS, namespaces=2,
                       workloads=3, rng=random.Random(n))
    sim.bcs.add("BCS-K8S-40003", businessID="7", clusterType="virtual")
    sim.bcs.add("BCS-MESOS-10001", businessID="7", engineType="mesos")
    settings = settings_for(sim, mysql_dsn, crd=False, bcs=sim.base_url, bcs_token=TOKEN,
                            bcs_interval=0.2, on_cluster_removed="delete")
    async with running(settings) as instance:
        for cid in (A, B):
            supervisor = await instance.controller.wait_owned(ClusterId(cid))
            await supervisor.wait_synced()
        assert set(instance.controller.clusters) == {A, B}
        assert {r["biz_id"] for r in await rows(mysql_dsn, A)} == {7}
        status = await instance.status()
        assert {c["origin"] for c in status["clusters"]} == {"http"}
        assert {c["server"] for c in status["clusters"]} == {
            f"{sim.base_url}/clusters/{A}", f"{sim.base_url}/clusters/{B}"}
        health = {h["origin"]: h for h in status["registries"]}["http"]
        assert health["clusters"] == 2 and health["last_error"] is None
        assert TOKEN not in str(status)

        # briefly not RUNNING: stopped, held, rows never touched
        sim.bcs.set_status(A, "FALURE")
        await until(lambda: ClusterId(A) not in instance.controller.clusters)
        pulls = instance.pull.generation
        await until(lambda: instance.pull.generation >= pulls + 3)  # removal had its chances
        assert (await instance.status())["held"] == {A: "NotRunning: BCS status FALURE"}
        assert (await active_rows(mysql_dsn, A))["pods"] == PODS
        assert instance.setup.removal.removed == []
        sim.bcs.set_status(A, "RUNNING")
        supervisor = await instance.controller.wait_owned(ClusterId(A))
        await supervisor.wait_synced()

        # the cluster manager is unreachable (row 43): the last good answer stays
        running_now = {c: instance.controller.supervisor(ClusterId(c)) for c in (A, B)}
        sim.bcs.fail("reset")
        pulls = instance.pull.generation
        await until(lambda: instance.pull.generation >= pulls + 3)
        health = {h["origin"]: h for h in (await instance.status())["registries"]}["http"]
        assert health["last_error"] and "BCS cluster manager" in health["last_error"]
        assert {c: instance.controller.supervisor(ClusterId(c)) for c in (A, B)} == running_now
        sim.bcs.fail("error", 503)
        pulls = instance.pull.generation
        await until(lambda: instance.pull.generation >= pulls + 3)
        assert {c: instance.controller.supervisor(ClusterId(c)) for c in (A, B)} == running_now
        sim.bcs.heal()

        # gone from the list: stopped, rows soft-deleted (on_cluster_removed: delete)
        sim.bcs.remove(B)
        await until(lambda: B in instance.setup.removal.removed)
        assert ClusterId(B) not in instance.controller.clusters
        assert set((await active_rows(mysql_dsn, B)).values()) == {0}
        assert (await active_rows(mysql_dsn, A))["pods"] == PODS
