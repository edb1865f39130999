"""Custom resources over HTTP: the SyncCluster CRD, generation, the status subresource,
finalizers, pruning; CRDs created and deleted through the API; Secrets and Events."""

from __future__ import annotations

import base64
import copy

import httpx
import orjson
from sim_support import Watch, rv

from synchronizer.simulator import SimCluster
from synchronizer.simulator.crd import SYNC_CLUSTER_CRD, install_crd

GROUP = "/apis/bkcmdb.bkbcs.tencent.com/v1"
SC = f"{GROUP}/namespaces/bkcmdb/syncclusters"
MERGE = {"Content-Type": "application/merge-patch+json"}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def sync_cluster(name: str, **spec: object) -> dict:
    return {"apiVersion": "bkcmdb.bkbcs.tencent.com/v1", "kind": "SyncCluster",
            "metadata": {"name": name},
            "spec": {"clusterId": name, "bizId": 2, "server": "https://10.0.0.1:6443",
                     **spec}}


async def test_the_crd_is_served_and_discoverable(c1: SimCluster,
                                                  client: httpx.AsyncClient) -> None:
    assert (await client.get(SC)).status_code == 404  # not before the CRD is installed
    install_crd(c1, SYNC_CLUSTER_CRD)
    crd = (await client.get(f"{CRDS}/syncclusters.bkcmdb.bkbcs.tencent.com")).json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "SyncCluster"
    listed = (await client.get(CRDS)).json()
    assert [i["metadata"]["name"] for i in listed["items"]] == [
        "syncclusters.bkcmdb.bkbcs.tencent.com"]
    groups = {g["name"] for g in (await client.get("/apis")).json()["groups"]}
    assert "bkcmdb.bkbcs.tencent.com" in groups
    resources = (await client.get(GROUP)).json()["resources"]
    assert {r["name"] for r in resources} == {"syncclusters", "syncclusters/status"}
    main = next(r for r in resources if r["name"] == "syncclusters")
    assert (main["kind"], main["namespaced"], main["shortNames"]) == ("SyncCluster", True,
                                                                      ["sc"])
    empty = (await client.get(SC)).json()
    assert (empty["kind"], empty["apiVersion"]) == ("SyncClusterList",
                                                    "bkcmdb.bkbcs.tencent.com/v1")


async def test_custom_resource_strategy(c1: SimCluster, client: httpx.AsyncClient) -> None:
    install_crd(c1, SYNC_CLUSTER_CRD)
    body = sync_cluster("cluster-a", unknownField="pruned")
    body["status"] = {"state": "Running"}
    created = (await client.post(SC, json=body)).json()
    assert created["metadata"]["generation"] == 1
    assert "unknownField" not in created["spec"] and "status" not in created
    path = f"{SC}/cluster-a"
    labelled = (await client.patch(path, headers=MERGE, content=orjson.dumps({
        "metadata": {"labels": {"a": "b"}, "annotations": {"kopf.zalando.org/x": "{}"}},
        "status": {"state": "Error"}}))).json()
    assert labelled["metadata"]["generation"] == 1 and "status" not in labelled
    assert labelled["metadata"]["annotations"] == {"kopf.zalando.org/x": "{}"}
    changed = (await client.patch(path, headers=MERGE, content=orjson.dumps(
        {"spec": {"bizId": 3}}))).json()
    assert changed["metadata"]["generation"] == 2
    status = (await client.patch(path + "/status", headers=MERGE, content=orjson.dumps({
        "spec": {"bizId": 99}, "metadata": {"labels": {"c": "d"}},
        "status": {"state": "Running", "observedGeneration": 2, "kopf": {"dropped": 1}}}))
              ).json()
    assert status["spec"]["bizId"] == 3 and "c" not in status["metadata"]["labels"]
    assert status["status"] == {"state": "Running", "observedGeneration": 2}  # pruned
    assert status["metadata"]["generation"] == 2
    unconditional = copy.deepcopy(status)
    del unconditional["metadata"]["resourceVersion"]
    refused = await client.put(path, json=unconditional)
    assert refused.status_code == 422  # custom resources need the resourceVersion
    invalid = await client.post(SC, json=sync_cluster("bad", bizId="two"))
    assert (invalid.status_code, invalid.json()["reason"]) == (422, "Invalid")
    assert "spec.bizId" in invalid.json()["message"]
    no_biz = sync_cluster("no-biz")
    del no_biz["spec"]["bizId"]
    assert (await client.post(SC, json=no_biz)).status_code == 201  # the product reports it
    enum = await client.post(SC, json=sync_cluster("kinds", kinds=["pods", "bogus"]))
    assert enum.status_code == 422


async def test_finalizers_keep_a_custom_resource_until_removed(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    install_crd(c1, SYNC_CLUSTER_CRD)
    body = sync_cluster("cluster-f")
    body["metadata"]["finalizers"] = ["kopf.zalando.org/KopfFinalizerMarker"]
    created = (await client.post(SC, json=body)).json()
    path = f"{SC}/cluster-f"
    async with Watch(client, SC, resourceVersion=rv(created)) as watch:
        await c1.wait_watchers(1)
        held = await client.delete(path)
        assert held.status_code == 200 and held.json()["metadata"]["deletionTimestamp"]
        marked = await watch.next()
        assert marked["type"] == "MODIFIED"
        assert marked["object"]["metadata"]["generation"] == 2  # deletion counts
        ops = [{"op": "test", "path": "/metadata/resourceVersion",
                "value": marked["object"]["metadata"]["resourceVersion"]},
               {"op": "remove", "path": "/metadata/finalizers/0"}]
        await client.patch(path, content=orjson.dumps(ops),
                           headers={"Content-Type": "application/json-patch+json"})
        gone = await watch.next()
        assert (gone["type"], gone["object"]["metadata"]["finalizers"]) == ("DELETED", [])
    assert (await client.get(path)).status_code == 404


async def test_crds_created_and_deleted_through_the_api(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    crd = copy.deepcopy(SYNC_CLUSTER_CRD)
    made = await client.post(CRDS, json=crd)
    assert made.status_code == 201
    await client.post(SC, json=sync_cluster("x"))
    async with Watch(client, SC, resourceVersion=c1.resource_version) as watch:
        await c1.wait_watchers(1)
        assert (await client.delete(f"{CRDS}/syncclusters.bkcmdb.bkbcs.tencent.com")
                ).status_code == 200
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "x")
    assert (await client.get(SC)).status_code == 404
    assert (await client.get(GROUP)).status_code == 404
    broken = copy.deepcopy(SYNC_CLUSTER_CRD)
    broken["metadata"]["name"] = "wrong"
    assert (await client.post(CRDS, json=broken)).status_code == 422


async def test_secrets_and_events(c1: SimCluster, client: httpx.AsyncClient) -> None:
    secret = {"metadata": {"name": "cluster-a-token"}, "type": "Opaque",
              "stringData": {"token": "s3cret"}}
    made = (await client.post("/api/v1/namespaces/bkcmdb/secrets", json=secret)).json()
    assert made["data"] == {"token": base64.b64encode(b"s3cret").decode()}
    assert "stringData" not in made
    got = (await client.get("/api/v1/namespaces/bkcmdb/secrets/cluster-a-token")).json()
    assert got["data"] == made["data"]
    listed = (await client.get("/api/v1/namespaces/bkcmdb/secrets")).json()
    assert listed["kind"] == "SecretList" and len(listed["items"]) == 1
    event = {"metadata": {"generateName": "kopf-event-"}, "type": "Normal",
             "reason": "Logging", "message": "done",
             "involvedObject": {"kind": "SyncCluster", "name": "a", "namespace": "bkcmdb"}}
    posted = await client.post("/api/v1/namespaces/bkcmdb/events", json=event)
    assert posted.status_code == 201
    assert posted.json()["metadata"]["name"].startswith("kopf-event-")
    kept = c1.truth("events", objects=True)
    assert [e["object"]["message"] for e in kept] == ["done"]
    k8s_events = await client.post("/apis/events.k8s.io/v1/namespaces/bkcmdb/events",
                                   json={"metadata": {"name": "e1"}, "note": "n"})
    assert k8s_events.status_code == 201
