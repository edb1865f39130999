"""The simulator and its model as bk-cmdb: raw HTTP requests (no client), the admin API, and
the standalone process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import httpx
import pytest
from bkcmdb_support import BIZ, SECRET, seed

from synchronizer.bkcmdb import BkCmdbModel
from synchronizer.bkcmdb.codes import Refusal
from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator

GATEWAY_AUTH = {"X-Bkapi-Authorization": json.dumps(
    {"bk_app_code": "bcs", "bk_app_secret": SECRET, "bk_username": "admin"})}


async def _post(http: httpx.AsyncClient, method: str, path: str, body: Any) -> dict[str, Any]:
    response = await http.request(method, path, json=body, headers=GATEWAY_AUTH)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
async def http() -> Any:
    sim = BkCmdbSimulator(auth=AuthConfig(mode="gateway", app_secret=SECRET))
    seed(sim)
    async with sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        client.sim = sim  # type: ignore[attr-defined]
        yield client


async def test_a_request_over_a_limit_is_refused_as_bk_cmdb_refuses_it(http: Any) -> None:
    cluster = await _post(http, "POST", "/api/v3/create/kube/cluster", {
        "bk_biz_id": BIZ, "name": "a", "uid": "a", "type": "INDEPENDENT_CLUSTER"})
    cid = cluster["data"]["id"]
    too_many = {"bk_biz_id": BIZ, "data": [{"bk_cluster_id": cid, "name": f"n{i}"}
                                           for i in range(201)]}
    answer = await _post(http, "POST", "/api/v3/createmany/kube/namespace", too_many)
    assert (answer["result"], answer["code"]) == (False, 1199035)
    assert answer["message"] == " data exceed the limit 200"
    nodes = {"bk_biz_id": BIZ, "ids": list(range(1, 102))}
    answer = await _post(http, "DELETE", "/api/v3/deletemany/kube/node", nodes)
    assert answer["message"] == " ids exceed the limit 10", "bk-cmdb's own misleading number"
    page = {"bk_biz_id": BIZ, "page": {"start": 0, "limit": 501}}
    answer = await _post(http, "POST", "/api/v3/findmany/kube/namespace", page)
    assert answer["code"] == 1199059
    assert http.sim.stats.largest_batch["batch_create_kube_namespace"] == 201


async def test_a_refused_batch_changes_nothing(http: Any) -> None:
    await _post(http, "POST", "/api/v3/create/kube/cluster", {
        "bk_biz_id": BIZ, "name": "a", "uid": "a", "type": "INDEPENDENT_CLUSTER"})
    body = {"bk_biz_id": BIZ, "data": [{"bk_cluster_id": 1, "name": "x"},
                                       {"bk_cluster_id": 1, "name": "x"}]}
    answer = await _post(http, "POST", "/api/v3/createmany/kube/namespace", body)
    assert answer["code"] == 1199014
    assert http.sim.model.namespaces == {}, "one transaction: nothing of the batch is kept"


async def test_missing_gateway_credentials_are_the_gateways_400(http: Any) -> None:
    response = await http.post("/api/v3/findmany/kube/cluster", json={"bk_biz_id": BIZ})
    assert response.status_code == 400
    assert response.json() == {"code": 1640001, "data": None, "code_name": "INVALID_ARGS",
                               "message": 'Parameters error [reason="app code cannot be empty"]',
                               "result": False}


async def test_the_admin_api_seeds_injects_and_reports(http: Any) -> None:
    seeded = await http.post("/_sim/seed", json={
        "businesses": [{"id": 9, "name": "nine"}],
        "modules": [{"biz_id": 9, "set": "bkbcs", "module": "bkbcs"}],
        "hosts": [{"ip": "10.2.0.1", "biz_id": 9}]})
    assert seeded.status_code == 200 and len(seeded.json()["hosts"]) == 1
    hosts = await _post(http, "POST", "/api/v3/hosts/app/9/list_hosts", {
        "bk_biz_id": 9, "page": {"start": 0, "limit": 10}, "fields": ["bk_host_id"]})
    assert hosts["data"]["info"] == [{"bk_host_id": seeded.json()["hosts"][0]}]
    fault = {"kind": "status", "status": 503, "route": "search_biz_inst_topo"}
    assert (await http.post("/_sim/faults", json=fault)).status_code == 200
    topo = await http.post("/api/v3/find/topoinst/biz/9", json={}, headers=GATEWAY_AUTH)
    assert topo.status_code == 503 and topo.json()["code"] == 1650201
    topo = await _post(http, "POST", "/api/v3/find/topoinst/biz/9", {})
    assert topo["data"][0]["child"][0]["child"][0]["bk_inst_name"] == "bkbcs"
    bad = await http.post("/_sim/faults", json={"kind": "explode"})
    assert bad.status_code == 400 and "unknown fault kind" in bad.text
    stats = (await http.get("/_sim/stats")).json()
    assert stats["requests"]["search_biz_inst_topo"] == 2
    await http.delete(f"/_sim/hosts/{seeded.json()['hosts'][0]}")
    assert (await http.get("/_sim/state")).status_code == 200
    assert (await http.post("/_sim/auth", json={"mode": "direct"})).json() == {"mode": "direct"}
    direct = await http.post("/api/v3/findmany/kube/cluster", json={"bk_biz_id": BIZ},
                             headers={"BK_User": "admin"})
    assert direct.status_code == 500 and direct.json()["bk_error_code"] == 1199027


def test_the_model_enforces_pod_rules_in_bk_cmdbs_order() -> None:
    model = BkCmdbModel()
    model.hosts.add_host("10.1.0.1", biz_id=BIZ)
    cid = model.create_cluster({"bk_biz_id": BIZ, "name": "a", "uid": "a",
                                "type": "INDEPENDENT_CLUSTER"})["id"]
    ns = model.create_namespaces({"bk_biz_id": BIZ, "data": [
        {"bk_cluster_id": cid, "name": "n"}]})["ids"][0]
    node = model.create_nodes({"bk_biz_id": BIZ, "data": [
        {"bk_cluster_id": cid, "bk_host_id": 1, "name": "n1", "internal_ip": ["10.1.0.1"]}]})
    wl = model.create_workloads("deployment", {"bk_biz_id": BIZ, "data": [
        {"bk_namespace_id": ns, "name": "w"}]})["ids"][0]
    pod = {"spec": {"bk_cluster_id": cid, "bk_namespace_id": ns, "bk_node_id": node["ids"][0],
                    "ref": {"kind": "deployment", "id": wl}}, "bk_host_id": 1, "name": "p"}
    with pytest.raises(Refusal) as info:
        model.create_pods({"data": [{"bk_biz_id": BIZ, "pods": [pod]}]})
    assert (info.value.code, info.value.text) == (1199010, "'pod operator' unassigned")
    pod["operator"] = ["admin"]
    wrong_ns = {**pod, "spec": {**pod["spec"], "bk_namespace_id": ns + 1}}
    with pytest.raises(Refusal) as info:
        model.create_pods({"data": [{"bk_biz_id": BIZ, "pods": [wrong_ns]}]})
    assert info.value.text == "'workload' data parameter verification does not pass"
    model.create_pods({"data": [{"bk_biz_id": BIZ, "pods": [pod]}]})
    assert model.nodes[node["ids"][0]]["has_pod"] is True
    with pytest.raises(Refusal) as info:
        model.delete_nodes({"bk_biz_id": BIZ, "ids": node["ids"]})
    assert "no pods can exist under the node" in info.value.text
    with pytest.raises(Refusal) as info:
        model.delete_clusters({"bk_biz_id": BIZ, "ids": [cid + 1]})
    assert info.value.code == 1199998, "a cluster delete of unknown ids is not idempotent"


async def test_the_standalone_simulator_prints_its_url_and_stops_cleanly() -> None:
    env = {**os.environ, "BKCMDB_SIM_APP_SECRET": SECRET}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer.bkcmdb.simulator", "--port", "0",
        "--businesses", "4", "--hosts-per-business", "3", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url) as client:
            hosts = await client.post("/api/v3/hosts/app/4/list_hosts", headers=GATEWAY_AUTH,
                                      json={"bk_biz_id": 4, "page": {"start": 0, "limit": 500}})
        assert len(hosts.json()["data"]["info"]) == 3
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
