"""The admin API end to end: a real instance, a real HTTP client, MariaDB, the simulator.

TEST-MATRIX rows 45 (a participant fails verification: 409, nothing changed; two
concurrent writes of one topology: serialised, the final state is one of them) and 46
(no token, wrong token, huge or malformed body: 401/403/413/400, nothing stored, the
token never echoed), the happy path (stored, assigned, reconciling, answered with each
cluster's state; tokens never shown), re-applying (a no-op), changing and deleting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from registries_support import ADMIN_TOKEN, PODS, active_rows, running, settings_for, until

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.cmdb import open_store
from synchronizer.registries.tables import RegistryTables
from synchronizer.settings import ClusterSettings
from synchronizer.simulator import Simulator

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
C1_TOKEN = "c1-cluster-token"


Admin = tuple[Instance, httpx.AsyncClient]


@pytest.fixture
async def admin(sim: Simulator, mysql_dsn: str) -> AsyncIterator[Admin]:
    sim.cluster("c1").token = C1_TOKEN  # c1 answers only with its token
    async with running(settings_for(sim, mysql_dsn, crd=False)) as instance, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{instance.http.bound[0]}",
                              timeout=60) as http:
        yield instance, http


def topology(sim: Simulator, *ids: str, **extra: Any) -> dict[str, Any]:
    clusters = []
    for cid in ids:
        cluster: dict[str, Any] = {"id": cid, "biz_id": 5, "server": sim.url_for(cid)}
        if cid == "c1":
            cluster["token"] = C1_TOKEN
        clusters.append({**cluster, **extra})
    return {"clusters": clusters}


async def stored(dsn: str) -> dict[str, int]:
    store = await open_store(dsn)
    try:
        return await RegistryTables(store).versions()
    finally:
        await store.close()


async def test_authentication_limits_and_validation(admin: Admin,
                                                    sim: Simulator, mysql_dsn: str) -> None:
    """TEST-MATRIX row 46."""
    _, http = admin
    body = topology(sim, "c2")
    missing = await http.put("/v1/topologies/t1", json=body)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    basic = await http.put("/v1/topologies/t1", json=body, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    wrong = await http.put("/v1/topologies/t1", json=body,
                           headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    for reply in (missing, basic, wrong, await http.get("/v1/topologies")):
        assert ADMIN_TOKEN not in reply.text and "not-the-token" not in reply.text
        assert set(reply.json()) == {"error"}

    huge = b'{"clusters": [' + b" " * 1_000_001 + b"]}"
    too_big = await http.put("/v1/topologies/t1", content=huge, headers=AUTH)
    assert too_big.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000  # no Content-Length: refused when the limit is crossed

    streamed = await http.put("/v1/topologies/t1", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413

    not_json = await http.put("/v1/topologies/t1", content=b"{clusters: ", headers=AUTH)
    assert not_json.status_code == 400 and not_json.json()["errors"][0].startswith("body: not")
    bad = await http.put("/v1/topologies/Bad_Name", headers=AUTH, json={
        "clusters": [{"id": "c1", "biz_id": -1, "server": "ftp://x", "token": 5, "color": "red"},
                     {"id": "c1", "biz_id": 1, "server": sim.url_for("c1")},
                     {"biz_id": 1, "server": sim.url_for("c2"), "kinds": ["pods", "secrets"]}],
        "extra": True})
    assert bad.status_code == 400
    errors = bad.json()["errors"]
    for expected in ("topology name 'Bad_Name'", "extra: unknown key",
                     "clusters[0].color: unknown key", "clusters[0].biz_id:",
                     "clusters[0].server: 'ftp://x'", "clusters[0].token:",
                     "clusters[1].id: 'c1' is also clusters[0]", "clusters[2].id:",
                     "clusters[2].kinds:"):
        assert any(e.startswith(expected) for e in errors), (expected, errors)
    assert await stored(mysql_dsn) == {}
    assert (await http.get("/v1/topologies/t1", headers=AUTH)).status_code == 404
    assert (await http.delete("/v1/topologies/t1", headers=AUTH)).status_code == 404


async def test_a_failed_participant_changes_nothing(admin: Admin,
                                                    sim: Simulator, mysql_dsn: str) -> None:
    """TEST-MATRIX row 45, first half."""
    instance, http = admin
    body = topology(sim, "c1", "c2")
    body["clusters"].append({"id": "c3", "biz_id": 5, "server": "http://127.0.0.1:9"})
    body["clusters"].append({"id": "c4", "biz_id": 5, "server": sim.url_for("c1"),
                             "token": "a-wrong-token"})
    reply = await http.put("/v1/topologies/t1", json=body, headers=AUTH)
    assert reply.status_code == 409
    errors = reply.json()["errors"]
    assert [e.split(":")[0] for e in errors] == ["cluster c3", "cluster c4"]
    assert "127.0.0.1:9" in errors[0] and "401" in errors[1]
    assert "a-wrong-token" not in reply.text and C1_TOKEN not in reply.text
    assert await stored(mysql_dsn) == {}
    assert not instance.controller.clusters


async def test_apply_reapply_change_and_delete(admin: Admin,
                                               sim: Simulator, mysql_dsn: str) -> None:
    instance, http = admin
    reply = await http.put("/v1/topologies/t1", json=topology(sim, "c1", "c2"), headers=AUTH)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["changed"] is True and doc["deployed"] is True
    assert [(c["id"], c["owner"], c["token_set"]) for c in doc["clusters"]] == [
        ("c1", "sync-a", True), ("c2", "sync-a", False)]
    assert {c["state"] for c in doc["clusters"]} <= {"syncing", "watching"}
    assert C1_TOKEN not in reply.text
    for cid in ("c1", "c2"):
        supervisor = await instance.controller.wait_running(ClusterId(cid))
        await supervisor.wait_synced()
        assert (await active_rows(mysql_dsn, cid))["pods"] == PODS
    status = await instance.status()
    assert {c["id"]: c["origin"] for c in status["clusters"]} == {"c1": "topology",
                                                                  "c2": "topology"}
    listed = (await http.get("/v1/topologies", headers=AUTH)).json()["topologies"]
    assert [t["name"] for t in listed] == ["t1"] and C1_TOKEN not in str(listed)
    one = (await http.get("/v1/topologies/t1", headers=AUTH)).json()
    assert {c["id"]: c["state"] for c in one["clusters"]} == {"c1": "watching",
                                                              "c2": "watching"}
    assert all(c["last_full_sync"] for c in one["clusters"])

    supervisors = {c: instance.controller.supervisor(ClusterId(c)) for c in ("c1", "c2")}
    versions = await stored(mysql_dsn)
    same = topology(sim, "c2", "c1")  # another order: the same topology
    again = await http.put("/v1/topologies/t1", json=same, headers=AUTH)
    assert again.status_code == 200 and again.json()["changed"] is False
    assert await stored(mysql_dsn) == versions
    assert {c: instance.controller.supervisor(ClusterId(c)) for c in ("c1", "c2")} == supervisors

    changed = await http.put("/v1/topologies/t1", json=topology(sim, "c2"), headers=AUTH)
    assert changed.status_code == 200 and changed.json()["removed"] == ["c1"]
    assert ClusterId("c1") not in instance.controller.clusters
    assert instance.controller.supervisor(ClusterId("c2")) is supervisors["c2"]

    deleted = await http.delete("/v1/topologies/t1", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["stopped"] is True
    assert not instance.controller.clusters
    assert (await active_rows(mysql_dsn, "c2"))["pods"] == PODS  # rows kept
    assert (await http.get("/v1/topologies/t1", headers=AUTH)).status_code == 404
    assert (await http.delete("/v1/topologies/t1", headers=AUTH)).status_code == 404


async def test_another_registrys_cluster_is_refused(sim: Simulator, mysql_dsn: str) -> None:
    settings = settings_for(sim, mysql_dsn, crd=False, clusters=[
        ClusterSettings(id="c2", biz_id=1, server=sim.url_for("c2"))])
    async with running(settings) as instance, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{instance.http.bound[0]}", timeout=60) as http:
        await instance.controller.wait_owned(ClusterId("c2"))
        reply = await http.put("/v1/topologies/t1", json=topology(sim, "c2"), headers=AUTH)
        assert reply.status_code == 409
        assert reply.json()["errors"] == ["cluster c2: already declared by static (config)"]
        assert await stored(mysql_dsn) == {}


async def test_concurrent_writes_are_serialised(admin: Admin,
                                                sim: Simulator, mysql_dsn: str) -> None:
    """TEST-MATRIX row 45, second half: two PUTs of one topology at once, through one
    instance (its lock) - both applied, one after the other, the last one whole."""
    instance, http = admin
    one, two = topology(sim, "c1"), topology(sim, "c2")
    first, second = await asyncio.gather(
        http.put("/v1/topologies/t1", json=one, headers=AUTH),
        http.put("/v1/topologies/t1", json=two, headers=AUTH))
    assert first.status_code == second.status_code == 200
    assert (await stored(mysql_dsn))["t1"] == 2  # two writes, one after the other
    final = (await http.get("/v1/topologies/t1", headers=AUTH)).json()
    ids = [c["id"] for c in final["clusters"]]
    assert ids in (["c1"], ["c2"])
    await until(lambda: set(instance.controller.clusters) == set(ids))
