"""A populated cluster is consistent the way a real one is, stays so under churn, and its
noise streams change nothing but volatile status (the oracle for "noise writes no rows").
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import httpx
import pytest

from synchronizer.simulator import Mix, SimCluster, Simulator, populate
from synchronizer.simulator.controllers import NOISE_STREAMS, REAL_STREAMS, Controllers
from synchronizer.simulator.workloads import template_hash


def by_uid(cluster: SimCluster) -> dict[str, tuple[str, dict[str, Any]]]:
    return {e["uid"]: (t.spec.id, e["object"]) for t in cluster.tables()
            for e in cluster.truth(t.spec.id, objects=True)}


def check_consistent(cluster: SimCluster) -> None:
    """The invariants of a real cluster that the product's kinds rely on."""
    objects = by_uid(cluster)
    nodes = {n["metadata"]["name"]: n for n in cluster.objects("nodes")}
    namespaces = set(cluster.sorted_keys("namespaces"))
    ips = {name: next(a["address"] for a in n["status"]["addresses"]
                      if a["type"] == "InternalIP") for name, n in nodes.items()}
    for pod in cluster.pods():
        meta = pod["metadata"]
        assert meta["namespace"] in namespaces
        assert pod["spec"]["nodeName"] in nodes
        assert pod["status"]["hostIP"] == ips[pod["spec"]["nodeName"]]
        owners = meta.get("ownerReferences") or []
        for ref in owners:
            _, owner = objects[ref["uid"]]
            assert (owner["kind"], owner["metadata"]["name"]) == (ref["kind"], ref["name"])
            assert ref["controller"] is True
        if owners and owners[0]["kind"] == "ReplicaSet":
            rs = objects[owners[0]["uid"]][1]
            rs_owner = rs["metadata"].get("ownerReferences")
            if rs_owner:  # a Deployment's: <deployment>-<hash>, the hash on the Pod
                dep = objects[rs_owner[0]["uid"]][1]
                hash_ = meta["labels"]["pod-template-hash"]
                assert rs["metadata"]["name"] == f"{dep['metadata']['name']}-{hash_}"
                assert meta["name"].startswith(rs["metadata"]["name"] + "-")
        if owners and owners[0]["kind"] == "StatefulSet":
            assert meta["name"].rsplit("-", 1)[0] == owners[0]["name"]
    for dep in cluster.objects("deployments"):
        meta = dep["metadata"]
        current = f"{meta['name']}-{template_hash(dep['spec']['template'])}"
        live = [k for k in cluster.owned_by(meta["uid"], "replicasets", meta["namespace"])]
        assert f"{meta['namespace']}/{current}" in live
        rs = cluster.get(meta["namespace"], current, resource="replicasets")
        assert rs is not None
        pods = cluster.owned_by(rs["metadata"]["uid"], "pods", meta["namespace"])
        assert len(pods) == dep["spec"]["replicas"] == rs["spec"]["replicas"]
        for old in live:
            if old != f"{meta['namespace']}/{current}":
                old_rs = cluster.get(*old.split("/"), resource="replicasets")
                assert old_rs is not None and old_rs["spec"]["replicas"] == 0


async def test_a_populated_cluster_is_consistent(c1: SimCluster) -> None:
    created = await populate(c1, pods=1500, nodes=40, workloads=60, namespaces=3, seed=11)
    assert created == c1.count("pods") == 1500
    check_consistent(c1)
    kinds = c1.counts()
    assert kinds["namespaces"] == 5  # default, kube-system, ns-0..2
    for resource in ("deployments.apps", "statefulsets.apps", "daemonsets.apps",
                     "jobs.batch", "cronjobs.batch"):
        assert kinds[resource] > 0
    nodes = c1.objects("nodes")
    assert any(n["spec"].get("unschedulable") for n in nodes)
    node = nodes[0]
    assert len(node["status"]["images"]) == 50
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["lastHeartbeatTime"]
    pods = c1.pods()
    by_kind = Counter((p["metadata"].get("ownerReferences") or [{"kind": None}])[0]["kind"]
                      for p in pods)
    daemonsets = kinds["daemonsets.apps"]
    assert by_kind["DaemonSet"] == daemonsets * 40  # one per Node each
    assert by_kind["Job"] == kinds["jobs.batch"] and by_kind[None] >= 1
    cron = c1.objects("cronjobs")[0]
    cron_jobs = c1.owned_by(cron["metadata"]["uid"], "jobs", cron["metadata"]["namespace"])
    assert cron_jobs and all(k.split("/")[1].startswith(cron["metadata"]["name"] + "-")
                             and k.rsplit("-", 1)[1].isdigit() for k in cron_jobs)
    lone = [rs for rs in c1.objects("replicasets") if not rs["metadata"].get("ownerReferences")]
    assert lone
    sizes = [len(c1.get_raw(p["metadata"]["namespace"], p["metadata"]["name"]) or b"")
             for p in pods[:300]]
    assert min(sizes) >= 4000 and max(sizes) <= 6500


async def test_an_exact_mix(c1: SimCluster) -> None:
    await populate(c1, pods=100, nodes=5, namespaces=2, seed=2,
                   mix=Mix(deployments=3, statefulsets=2, daemonsets=1, jobs=2, cronjobs=1,
                           replicasets=1, bare_pods=3))
    kinds = c1.counts()
    assert (kinds["deployments.apps"], kinds["statefulsets.apps"], kinds["daemonsets.apps"],
            kinds["cronjobs.batch"], kinds["jobs.batch"]) == (3, 2, 1, 1, 4)
    assert kinds["pods"] == 100
    check_consistent(c1)


def strip_volatile(resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without what the noise streams may change (and the version they bump)."""
    out = copy.deepcopy(obj)
    out["metadata"].pop("resourceVersion", None)
    status = out.get("status", {})
    for cond in status.get("conditions", []):
        cond.pop("lastHeartbeatTime", None)
        cond.pop("lastProbeTime", None)
    for cs in status.get("containerStatuses", []):
        cs.pop("restartCount", None)
    for f in ("readyReplicas", "availableReplicas", "numberReady", "numberAvailable",
              "unavailableReplicas"):
        status.pop(f, None)
    return out


@pytest.mark.parametrize("stream", NOISE_STREAMS)
async def test_noise_changes_only_volatile_status(c1: SimCluster, stream: str) -> None:
    await populate(c1, pods=400, nodes=20, workloads=20, namespaces=2, seed=5)
    before = {t.spec.id: {e["uid"]: strip_volatile(t.spec.id, e["object"])
                          for e in c1.truth(t.spec.id, objects=True)} for t in c1.tables()}
    start = c1.resource_version
    controllers = Controllers(c1, seed=1)
    controllers.step(stream, 60)
    made = c1.changes(start)
    assert controllers.counts.real == {}
    assert controllers.counts.noise == made and sum(made.values()) > 0
    if stream == "heartbeats":
        assert made == {"nodes": 60}  # every beat is a change, even within one second
    after = {t.spec.id: {e["uid"]: strip_volatile(t.spec.id, e["object"])
                         for e in c1.truth(t.spec.id, objects=True)} for t in c1.tables()}
    assert after == before


@pytest.mark.parametrize("stream", REAL_STREAMS)
async def test_real_streams_keep_the_cluster_consistent(c1: SimCluster, stream: str) -> None:
    await populate(c1, pods=600, nodes=10, workloads=30, namespaces=2, seed=6)
    start = c1.resource_version
    controllers = Controllers(c1, seed=2)
    controllers.step(stream, 80)
    assert controllers.counts.noise.keys() <= {"deployments.apps", "replicasets.apps",
                                               "statefulsets.apps", "cronjobs.batch",
                                               "jobs.batch"}
    assert sum(controllers.counts.real.values()) > 0
    assert controllers.counts.real + controllers.counts.noise == Counter(c1.changes(start))
    check_consistent(c1)


async def test_a_rollout_makes_a_new_replicaset_and_new_pods(c1: SimCluster) -> None:
    await populate(c1, pods=60, nodes=3, namespaces=1, seed=8, mix=Mix(deployments=1))
    (dep,) = c1.objects("deployments")
    meta = dep["metadata"]
    old_pods = set(c1.sorted_keys("pods"))
    controllers = Controllers(c1, seed=3)
    controllers.workloads.rollout()
    new = c1.get(meta["namespace"], meta["name"], resource="deployments")
    assert new is not None and new["metadata"]["generation"] == meta["generation"] + 1
    assert template_hash(new["spec"]["template"]) != template_hash(dep["spec"]["template"])
    assert not old_pods & set(c1.sorted_keys("pods"))
    assert c1.count("pods") == 60
    check_consistent(c1)


async def test_paced_streams_and_the_admin_api(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url + "/_sim/clusters") as admin:
        await admin.post("/k1", json={})
        filled = (await admin.post("/k1/populate", json={
            "pods": 300, "nodes": 10, "workloads": 12, "namespaces": 2, "seed": 1})).json()
        assert filled["created"] == 300 and filled["kinds"]["nodes"] == 10
        beat = await admin.post("/k1/churn/heartbeats", json={"events": 25, "rate": None})
        assert beat.status_code == 202
        done = await sim.controllers("k1").wait("heartbeats")
        assert (done.done, done.running) == (25, False)
        status = (await admin.get("/k1/churns")).json()
        assert status["counts"] == {"real": {}, "noise": {"nodes": 25}}
        stepped = (await admin.post("/k1/churn/nodes/step", json={"n": 5})).json()
        assert sum(stepped["real"].values()) >= 5
        started = (await admin.post("/k1/churn/heartbeats", json={"interval": 3600})).json()
        assert started["rate"] == pytest.approx(10 / 3600) and started["target"] is None
        stopped = (await admin.delete("/k1/churn/heartbeats")).json()
        await sim.controllers("k1").wait("heartbeats")
        assert stopped["stream"] == "heartbeats"
        assert (await admin.post("/k1/churn/nope", json={})).status_code == 400
        denied = (await admin.post("/k1/deny/nodes", json={"status": 404})).json()
        assert denied == {"denied": {"nodes": 404}}
        assert (await admin.delete("/k1/deny/nodes")).json() == {"denied": {}}
        assert (await admin.post("/k1/deny/nodes", json={"status": 500})).status_code == 400
        assert (await admin.post("/k1/deny/bogus", json={})).status_code == 404
        truth = (await admin.get("/k1/truth/deployments", params={"objects": "1"})).json()
        assert (truth["resource"], truth["kind"]) == ("deployments.apps", "Deployment")
        assert truth["items"][0]["object"]["kind"] == "Deployment"
        stats = (await admin.get("/k1")).json()
        assert stats["kinds"]["pods"] == sim.cluster("k1").count("pods")
