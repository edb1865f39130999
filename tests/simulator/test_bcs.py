"""The BCS cluster manager's registry and the gateway's Kubernetes proxy, over real HTTP:
the real field names and envelope, the gateway's bearer token, status changes, faults."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import httpx
import pytest

from synchronizer.simulator import Simulator
from synchronizer.simulator.bcs import make_cluster

LIST = "/bcsapi/v4/clustermanager/v1/cluster"
TOKEN = "gateway-secret"
PROTO_FIELDS = {
    "clusterID", "clusterName", "federationClusterID", "provider", "region", "vpcID",
    "projectID", "businessID", "environment", "engineType", "isExclusive", "clusterType",
    "labels", "creator", "createTime", "updateTime", "bcsAddons", "extraAddons", "systemID",
    "manageType", "master", "networkSettings", "clusterBasicSettings",
    "clusterAdvanceSettings", "nodeSettings", "status", "updater", "networkType",
    "autoGenerateMasterNodes", "template", "extraInfo", "moduleID", "extraClusterID",
    "isCommonCluster", "description", "clusterCategory", "is_shared", "kubeConfig",
    "importCategory", "cloudAccountID", "message", "isMixed", "clusterIamRole",
    "sharedRanges",
}
"""Every field of clustermanager.proto's Cluster message, in its JSON spelling."""


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_list_has_the_real_envelope_fields_and_filters(sim: Simulator) -> None:
    sim.bcs.token = TOKEN
    sim.bcs.add("BCS-K8S-40001", businessID="2", kubeConfig="apiVersion: v1 (secret)")
    sim.bcs.add("BCS-K8S-40002", businessID="3", status="DELETING")
    sim.bcs.add("BCS-K8S-40003", businessID="3", clusterType="virtual")
    sim.bcs.add("BCS-MESOS-10001", businessID="2", engineType="mesos")
    sim.bcs.add("BCS-K8S-40009", businessID="2", status="DELETED")
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        missing = await http.get(LIST)
        assert (missing.status_code, missing.json()) == (401, {
            "code": 401, "result": False, "message": "Resource is Unauthorized"})
        assert (await http.get(LIST, headers=auth("wrong"))).status_code == 401
        reply = (await http.get(LIST, headers=auth())).json()
        assert (reply["code"], reply["message"], reply["result"]) == (0, "success", True)
        ids = [c["clusterID"] for c in reply["data"]]
        assert ids == ["BCS-K8S-40001", "BCS-K8S-40002", "BCS-K8S-40003", "BCS-MESOS-10001"]
        assert all(set(c) == PROTO_FIELDS for c in reply["data"])
        first = reply["data"][0]
        assert first["businessID"] == "2" and first["kubeConfig"] == ""
        assert set(reply["clusterExtraInfo"]) == set(ids)
        every = (await http.get(LIST, headers=auth(), params={"all": "true"})).json()
        assert len(every["data"]) == 5
        biz3 = (await http.get(LIST, headers=auth(), params={"businessID": "3"})).json()
        assert [c["clusterID"] for c in biz3["data"]] == ["BCS-K8S-40002", "BCS-K8S-40003"]
        one = (await http.get(LIST + "/BCS-K8S-40002", headers=auth())).json()
        assert (one["result"], one["data"]["status"]) == (True, "DELETING")
        none = (await http.get(LIST + "/BCS-K8S-99999", headers=auth())).json()
        assert (none["code"], none["result"]) == (1405420, False)
    assert sim.bcs.requests["unauthorized"] == 2


async def test_the_gateway_proxy_needs_the_token_when_one_is_set(sim: Simulator) -> None:
    cluster = sim.add_bcs_cluster("BCS-K8S-40001", businessID="2")
    pods = "/clusters/BCS-K8S-40001/api/v1/pods"
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        assert (await http.get(pods)).status_code == 200  # no gateway token: open
        sim.bcs.token = TOKEN
        refused = await http.get(pods)
        assert refused.status_code == 401 and refused.json()["result"] is False
        assert (await http.get(pods, headers=auth("wrong"))).status_code == 401
        listed = await http.get(pods, headers=auth())
        assert listed.status_code == 200 and listed.json()["kind"] == "PodList"
        assert (await http.get("/api/v1/pods")).status_code == 200  # the root is not proxied
        cluster.token = "cluster-own"  # behind the gateway, the gateway's token is enough
        assert (await http.get(pods, headers=auth())).status_code == 200
        assert (await http.get("/clusters/nope/api/v1/pods", headers=auth())
                ).status_code == 404


async def test_the_admin_api_changes_the_registry(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url + "/_sim/bcs") as admin, \
            httpx.AsyncClient(base_url=sim.base_url) as http:
        made = await admin.put("/clusters/BCS-K8S-41000", json={
            "businessID": "7", "clusterName": "games", "simulate": True})
        assert made.status_code == 200 and made.json()["businessID"] == "7"
        assert "BCS-K8S-41000" in sim.clusters
        changed = (await admin.patch("/clusters/BCS-K8S-41000",
                                     json={"status": "DELETING"})).json()
        assert changed["status"] == "DELETING"
        listed = (await http.get(LIST)).json()["data"]
        assert [(c["clusterID"], c["status"]) for c in listed] == [("BCS-K8S-41000",
                                                                     "DELETING")]
        assert (await admin.patch("/clusters/BCS-K8S-41000",
                                  json={"status": "BROKEN"})).status_code == 400
        assert (await admin.put("/clusters/x", json={"businessID": 7})).status_code == 400
        assert (await admin.put("/clusters/x", json={"bogus": 1})).status_code == 400
        configured = (await admin.post("/config", json={"token": TOKEN})).json()
        assert configured["token_set"] is True and TOKEN not in str(configured)
        assert (await http.get(LIST)).status_code == 401
        assert (await admin.delete("/clusters/BCS-K8S-41000")).json() == {
            "removed": "BCS-K8S-41000"}
        assert (await http.get(LIST, headers=auth())).json()["data"] == []
        assert (await admin.delete("/clusters/BCS-K8S-41000")).status_code == 404
        assert (await admin.post("/config", json={"fault": {"mode": "bogus"}})
                ).status_code == 400


@pytest.mark.parametrize("mode", ["error", "failure"])
async def test_error_faults(sim: Simulator, mode: str) -> None:
    sim.bcs.add("BCS-K8S-40001")
    sim.bcs.fail(mode, 503)  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        reply = await http.get(LIST)
        body = reply.json()
        assert body["result"] is False
        assert reply.status_code == (503 if mode == "error" else 200)
        sim.bcs.heal()
        assert (await http.get(LIST)).json()["result"] is True


async def test_a_reset_registry_is_unreachable(sim: Simulator) -> None:
    sim.bcs.fail("reset")
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            await http.get(LIST)
        sim.bcs.heal()
        assert (await http.get(LIST)).status_code == 200


async def test_a_stalled_registry_answers_once_healed(sim: Simulator) -> None:
    sim.bcs.add("BCS-K8S-40001")
    sim.bcs.fail("stall")
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=30) as http:
        pending = asyncio.create_task(http.get(LIST))
        async with asyncio.timeout(30):
            await sim.bcs.wait_until(lambda: sim.bcs.requests["stall"] == 1)
        assert not pending.done()
        sim.bcs.heal()
        reply = await pending
        assert reply.json()["data"][0]["clusterID"] == "BCS-K8S-40001"


def test_cluster_records_are_validated() -> None:
    assert make_cluster("BCS-K8S-1")["status"] == "RUNNING"
    with pytest.raises(ValueError, match="status must be one of"):
        make_cluster("BCS-K8S-1", status="UP")
    with pytest.raises(ValueError, match="businessID is a string"):
        make_cluster("BCS-K8S-1", businessID=2)


def test_a_standalone_process_serves_every_kind_and_the_registry() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "synchronizer.simulator", "--port", "0", "--pods", "40",
         "--nodes", "3", "--workloads", "4", "--clusters", "BCS-K8S-40001",
         "--bcs", "--bcs-token", TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        registry = httpx.get(url + LIST, headers=auth(), timeout=10).json()
        assert [c["clusterID"] for c in registry["data"]] == ["BCS-K8S-40001"]
        nodes = httpx.get(url + "/clusters/BCS-K8S-40001/api/v1/nodes", headers=auth(),
                          timeout=10).json()
        assert len(nodes["items"]) == 3
        assert httpx.get(url + "/clusters/BCS-K8S-40001/api/v1/nodes",
                         timeout=10).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
