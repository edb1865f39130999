"""Every synced kind over real HTTP: discovery, one revision counter, generic list/watch
semantics, writes with apiserver's strategy, per-resource faults.

Clients are httpx (to see the wire exactly) and the official kubernetes client, typed and
dynamic (to prove the discovery documents and list shapes are what it expects).
"""

from __future__ import annotations

import asyncio
import random

import httpx
import orjson
import pytest
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from sim_support import Watch, list_all, rv

from synchronizer.simulator import SimCluster, Simulator, make_pod, pod_name, populate
from synchronizer.simulator.nodes import image_pool, make_node, node_ip
from synchronizer.simulator.workloads import template_hash

NODES = "/api/v1/nodes"
DEPLOYMENTS = "/apis/apps/v1/deployments"
MERGE = {"Content-Type": "application/merge-patch+json"}


def add_node(cluster: SimCluster, n: int, rng: random.Random) -> dict:
    node = make_node(f"node-{n:04d}", rng=rng, ip=node_ip(n), now=cluster.now(),
                     pool=image_pool(rng, 60))
    return cluster.create(node, resource="nodes")


def api_client(url: str) -> k8s.ApiClient:
    config = k8s.Configuration()
    config.host = url
    return k8s.ApiClient(config)


async def test_the_official_client_discovers_and_lists_every_kind(
        sim: Simulator, c1: SimCluster) -> None:
    await populate(c1, pods=300, nodes=12, workloads=40, namespaces=3, seed=4)

    def with_client() -> dict[str, int]:
        with api_client(sim.url_for("c1")) as api:
            core, apps, batch = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.BatchV1Api(api)
            counts = {
                "pods": len(core.list_pod_for_all_namespaces(limit=100).items),
                "nodes": len(core.list_node().items),
                "namespaces": len(core.list_namespace().items),
                "deployments": len(apps.list_deployment_for_all_namespaces().items),
                "replicasets": len(apps.list_replica_set_for_all_namespaces().items),
                "statefulsets": len(apps.list_stateful_set_for_all_namespaces().items),
                "daemonsets": len(apps.list_daemon_set_for_all_namespaces().items),
                "jobs": len(batch.list_job_for_all_namespaces().items),
                "cronjobs": len(batch.list_cron_job_for_all_namespaces().items),
            }
            node = core.read_node(core.list_node().items[0].metadata.name)
            assert node.status.node_info.kubelet_version.startswith("v1.")
            dyn = DynamicClient(api)
            deploy = dyn.resources.get(api_version="apps/v1", kind="Deployment")
            assert deploy.namespaced and "status" in deploy.subresources
            counts["dynamic cronjobs"] = len(dyn.resources.get(
                api_version="batch/v1", kind="CronJob").get().items)
            return counts

    counts = await asyncio.to_thread(with_client)
    assert counts["pods"] == 100  # one page
    truth = c1.counts()
    for name in ("nodes", "namespaces"):
        assert counts[name] == truth[name]
    for name, group in (("deployments", "apps"), ("replicasets", "apps"),
                        ("statefulsets", "apps"), ("daemonsets", "apps"), ("jobs", "batch"),
                        ("cronjobs", "batch")):
        assert counts[name] == truth[f"{name}.{group}"] > 0
    assert counts["dynamic cronjobs"] == counts["cronjobs"]


async def test_discovery_documents_have_the_real_shapes(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    assert (await client.get("/api")).json()["versions"] == ["v1"]
    core = (await client.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "nodes", "namespaces", "secrets", "events"} <= names
    assert (core["kind"], core["groupVersion"]) == ("APIResourceList", "v1")
    groups = (await client.get("/apis")).json()
    assert groups["kind"] == "APIGroupList"
    by_name = {g["name"]: g for g in groups["groups"]}
    assert by_name["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert {"apps", "batch", "apiextensions.k8s.io", "events.k8s.io"} <= by_name.keys()
    apps = (await client.get("/apis/apps/v1")).json()
    deploy = next(r for r in apps["resources"] if r["name"] == "deployments")
    assert deploy == {"name": "deployments", "singularName": "deployment", "namespaced": True,
                      "kind": "Deployment", "shortNames": ["deploy"], "categories": ["all"],
                      "verbs": ["create", "delete", "get", "list", "patch", "update",
                                "watch"]}
    assert (await client.get("/apis/apps")).json()["versions"][0]["version"] == "v1"
    assert (await client.get("/apis/nope/v1")).status_code == 404


async def test_one_revision_counter_orders_every_kind(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(2)
    c1.create(make_pod("ns-a", pod_name(rng, "app"), rng=rng))
    start = c1.resource_version
    async with Watch(client, "/api/v1/pods", resourceVersion=start,
                     allowWatchBookmarks="true") as pods, \
            Watch(client, NODES, resourceVersion=start) as nodes:
        await c1.wait_watchers(2)
        node = add_node(c1, 1, rng)
        assert rv(node) == start + 1
        event = await nodes.next()
        assert (event["type"], event["object"]["kind"], rv(event["object"])) == (
            "ADDED", "Node", start + 1)
        bookmark = await pods.next()  # the Pod watch has no event, only a later version
        while rv(bookmark["object"]) < rv(node):
            bookmark = await pods.next()
        assert bookmark["type"] == "BOOKMARK" and bookmark["object"]["kind"] == "Pod"
        c1.create(make_pod("ns-a", pod_name(rng, "app"), rng=rng))
        assert (await pods.next_event())["object"]["kind"] == "Pod"
    c1.compact()
    async with Watch(client, NODES, resourceVersion=start) as stale:
        (line,) = await stale.rest()
    assert orjson.loads(line)["object"]["code"] == 410


async def test_lists_of_any_kind_page_through_one_snapshot(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(3)
    for n in range(30):
        add_node(c1, n, rng)
    first = (await client.get(NODES, params={"limit": 10})).json()
    assert (first["kind"], first["metadata"]["remainingItemCount"]) == ("NodeList", 20)
    c1.delete(None, "node-0025", resource="nodes")
    add_node(c1, 99, rng)
    rest = await list_all(client, NODES, 10, **{"continue": first["metadata"]["continue"]})
    names = [i["metadata"]["name"] for p in [first, *rest] for i in p["items"]]
    assert names == [f"node-{n:04d}" for n in range(30)]
    assert {rv(p) for p in [first, *rest]} == {rv(first)}
    c1.compact()
    expired = await client.get(NODES, params={"limit": 10,
                                              "continue": first["metadata"]["continue"]})
    assert (expired.status_code, expired.json()["reason"]) == (410, "Expired")
    exact = (await client.get(NODES, params={"resourceVersion": rv(first),
                                             "resourceVersionMatch": "Exact"}))
    assert exact.status_code == 410  # compacted away


async def test_watch_paths_name_filter_and_initial_events(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(4)
    for n in range(3):
        add_node(c1, n, rng)
    since = c1.resource_version
    async with Watch(client, "/api/v1/watch/nodes/node-0001", query=False,
                     resourceVersion=since) as one:
        await c1.wait_watchers(1)
        c1.update(None, "node-0000", lambda n: n["metadata"]["labels"].update(x="0"),
                  resource="nodes")
        c1.update(None, "node-0001", lambda n: n["metadata"]["labels"].update(x="1"),
                  resource="nodes")
        event = await one.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "node-0001")
    async with Watch(client, NODES, sendInitialEvents="true", allowWatchBookmarks="true",
                     resourceVersionMatch="NotOlderThan") as initial:
        events = await initial.take(4)
    assert [e["type"] for e in events] == ["ADDED"] * 3 + ["BOOKMARK"]
    assert events[3]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}
    bad = await client.get(NODES, params={"watch": "1", "resourceVersionMatch": "Exact"})
    assert bad.status_code == 400


async def test_writes_follow_the_strategy_of_each_kind(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await populate(c1, pods=40, nodes=3, workloads=6, namespaces=1, seed=5)
    (dep,) = [d for d in c1.objects("deployments")][:1]
    ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
    gen = dep["metadata"]["generation"]
    scaled = (await client.patch(path, headers=MERGE, content=orjson.dumps(
        {"spec": {"replicas": 9}, "status": {"replicas": 1234}}))).json()
    assert scaled["metadata"]["generation"] == gen + 1
    assert scaled["status"]["replicas"] != 1234  # the main resource cannot write status
    labelled = (await client.patch(path, headers=MERGE, content=orjson.dumps(
        {"metadata": {"labels": {"tier": "gold"}}}))).json()
    assert labelled["metadata"]["generation"] == gen + 1  # metadata is not counted
    status = (await client.patch(path + "/status", headers=MERGE, content=orjson.dumps(
        {"spec": {"replicas": 1}, "status": {"readyReplicas": 7}}))).json()
    assert (status["spec"]["replicas"], status["status"]["readyReplicas"]) == (9, 7)
    assert status["metadata"]["generation"] == gen + 1
    put = dict(status, status={"observedGeneration": 99})
    replaced = (await client.put(path + "/status", json=put)).json()
    assert replaced["status"] == {"observedGeneration": 99}
    created = await client.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json={
        "metadata": {"name": "fresh"}, "spec": dep["spec"], "status": {"replicas": 3}})
    assert created.status_code == 201
    assert created.json()["status"] == {} and created.json()["metadata"]["generation"] == 1
    gone = await client.delete(path)
    assert (gone.status_code, gone.json()["status"]) == (200, "Success")
    assert c1.get(ns, name, resource="deployments") is None
    assert (await client.get(path)).json()["message"] == f'deployments.apps "{name}" not found'
    assert (await client.get("/api/v1/nodes/none")).status_code == 404
    assert (await client.get(f"/api/v1/namespaces/{ns}/nodes")).status_code == 404


async def test_finalizers_hold_a_deleted_object_until_removed(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(6)
    add_node(c1, 0, rng)
    c1.merge_patch(None, "node-0000", {"metadata": {"finalizers": ["example.com/hold"]}},
                   resource="nodes")
    async with Watch(client, NODES, resourceVersion=c1.resource_version) as watch:
        await c1.wait_watchers(1)
        held = (await client.delete(f"{NODES}/node-0000")).json()
        assert held["metadata"]["deletionTimestamp"]
        event = await watch.next()
        assert event["type"] == "MODIFIED" and event["object"]["metadata"]["deletionTimestamp"]
        adding = await client.patch(f"{NODES}/node-0000", headers=MERGE, content=orjson.dumps(
            {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}))
        assert adding.status_code == 422
        await client.patch(f"{NODES}/node-0000", headers=MERGE,
                           content=orjson.dumps({"metadata": {"finalizers": []}}))
        assert (await watch.next())["type"] == "DELETED"
    assert c1.count("nodes") == 0


async def test_garbage_collection_and_namespace_deletion(c1: SimCluster) -> None:
    await populate(c1, pods=200, nodes=4, workloads=12, namespaces=2, seed=7)
    dep = c1.objects("deployments", "ns-0")[0]
    ns, name, uid = (dep["metadata"][k] for k in ("namespace", "name", "uid"))
    (rs_key,) = c1.owned_by(uid, "replicasets", ns)
    rs = c1.get(*rs_key.split("/"), resource="replicasets")
    assert rs is not None
    pods = c1.owned_by(rs["metadata"]["uid"], "pods", ns)
    assert len(pods) == dep["spec"]["replicas"]
    c1.delete(ns, name, resource="deployments")
    assert c1.get(*rs_key.split("/"), resource="replicasets") is None
    assert not c1.owned_by(rs["metadata"]["uid"], "pods", ns)
    before = c1.resource_version
    inside = sum(len(c1.table(t.spec.id).in_namespace("ns-1")) for t in c1.tables()
                 if t.spec.namespaced)
    c1.delete(None, "ns-1", resource="namespaces")
    assert all(not t.in_namespace("ns-1") for t in c1.tables() if t.spec.namespaced)
    changes = c1.changes(before)
    assert changes["namespaces"] == 2  # Terminating, then DELETED
    assert sum(changes.values()) == inside + 2


async def test_denied_resources_answer_403_or_vanish_until_allowed(
        sim: Simulator, c1: SimCluster, client: httpx.AsyncClient) -> None:
    add_node(c1, 0, random.Random(1))
    async with Watch(client, NODES, resourceVersion=c1.resource_version) as watch:
        await c1.wait_watchers(1)
        c1.deny("nodes", 403)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await watch.rest()  # an open watch is cut so the client meets the denial
    forbidden = await client.get(NODES)
    status = forbidden.json()
    assert (forbidden.status_code, status["reason"]) == (403, "Forbidden")
    assert 'cannot list resource "nodes" in API group "" at the cluster scope' in \
        status["message"]
    assert (await client.get("/api/v1/pods")).status_code == 200
    async with httpx.AsyncClient(base_url=sim.url_for("default")) as other:
        assert (await other.get(NODES)).status_code == 200  # another cluster is unaffected
    c1.deny("deployments", 404)
    assert (await client.get(DEPLOYMENTS)).status_code == 404
    apps = (await client.get("/apis/apps/v1")).json()
    assert "deployments" not in {r["name"] for r in apps["resources"]}
    c1.allow("nodes")
    assert (await client.get(NODES)).status_code == 200
    c1.allow()
    assert (await client.get(DEPLOYMENTS)).status_code == 200
    with pytest.raises(ValueError, match="403 or 404"):
        c1.deny("nodes", 500)


async def test_fault_switches_can_target_one_resource(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(8)
    add_node(c1, 0, rng)
    c1.fail_next(503, count=None, resource="nodes")
    assert (await client.get(NODES)).status_code == 503
    assert (await client.get("/api/v1/pods")).status_code == 200
    c1.clear_failures()
    since = c1.resource_version
    async with Watch(client, NODES, resourceVersion=since) as nodes, \
            Watch(client, "/api/v1/pods", resourceVersion=since) as pods:
        await c1.wait_watchers(2)
        c1.stall_streams(True, resource="nodes")
        c1.update(None, "node-0000", lambda n: n["metadata"]["labels"].update(a="1"),
                  resource="nodes")
        pod = c1.create(make_pod("ns-a", pod_name(rng, "x"), rng=rng))
        assert (await pods.next())["object"]["metadata"]["uid"] == pod["metadata"]["uid"]
        (node_stream,) = [s for s in c1.streams if s.resource == "nodes"]
        assert node_stream.sent_events == 0
        assert c1.inject_raw(b'{"type":"SURPRISE","object":{}}', resource="pods") == 1
        assert (await pods.next())["type"] == "SURPRISE"
        assert c1.replay(1, resource="pods") == 1
        assert (await pods.next())["type"] == "ADDED"
        c1.stall_streams(False, resource="nodes")
        assert (await nodes.next())["type"] == "MODIFIED"
        assert c1.drop_streams(resource="nodes") == 1
        assert c1.watchers == 1


async def test_selectors_narrow_lists_and_watches(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await populate(c1, pods=60, nodes=3, workloads=4, namespaces=1, seed=9)
    node = c1.objects("nodes")[0]["metadata"]["name"]
    on_node = (await client.get("/api/v1/pods", params={
        "fieldSelector": f"spec.nodeName={node}"})).json()["items"]
    assert on_node and {p["spec"]["nodeName"] for p in on_node} == {node}
    assert len(on_node) == sum(p["spec"]["nodeName"] == node for p in c1.pods())
    app = c1.objects("deployments")[0]["spec"]["selector"]["matchLabels"]["app"]
    labelled = (await client.get("/api/v1/pods", params={
        "labelSelector": f"app={app},pod-template-hash"})).json()["items"]
    assert labelled and {p["metadata"]["labels"]["app"] for p in labelled} == {app}
    assert (await client.get("/api/v1/pods", params={
        "fieldSelector": "spec.bogus=1"})).status_code == 400
    async with Watch(client, NODES, resourceVersion=c1.resource_version,
                     fieldSelector=f"metadata.name={node}") as watch:
        await c1.wait_watchers(1)
        for other in c1.sorted_keys("nodes"):
            c1.update(None, other, lambda n: n["metadata"]["labels"].update(z="1"),
                      resource="nodes")
        event = await watch.next()
        assert event["object"]["metadata"]["name"] == node


async def test_kube_system_uid_is_the_incarnation(sim: Simulator, c1: SimCluster,
                                                  client: httpx.AsyncClient) -> None:
    await populate(c1, pods=10, nodes=1, workloads=1, seed=1)
    stored = (await client.get("/api/v1/namespaces/kube-system")).json()
    assert stored["metadata"]["uid"] == c1.incarnation
    assert rv(stored) > 1  # a real object, not the synthetic one
    c1.reset_incarnation()
    again = (await client.get("/api/v1/namespaces/kube-system")).json()
    assert again["metadata"]["uid"] == c1.incarnation != stored["metadata"]["uid"]


async def test_template_hash_names_the_replicaset(c1: SimCluster) -> None:
    await populate(c1, pods=50, nodes=2, workloads=5, namespaces=1, seed=3)
    for dep in c1.objects("deployments"):
        meta = dep["metadata"]
        rs_name = f"{meta['name']}-{template_hash(dep['spec']['template'])}"
        rs = c1.get(meta["namespace"], rs_name, resource="replicasets")
        assert rs is not None and rs["metadata"]["ownerReferences"][0]["uid"] == meta["uid"]


async def test_no_pod_has_two_containers_of_one_name() -> None:
    """The API server refuses such a Pod; the log-agent DaemonSet's Pods once had two
    (its own container and the log-agent sidecar)."""
    import random

    from synchronizer.simulator import Mix, Simulator, populate

    cluster = Simulator(seed=1).add_cluster("c")
    await populate(cluster, pods=600, namespaces=4, rng=random.Random(1), nodes=20,
                   mix=Mix(deployments=10, statefulsets=2, daemonsets=4, jobs=2, cronjobs=1,
                           replicasets=1, bare_pods=5))
    apps = set()
    for pod in cluster.objects("pods"):
        names = [c["name"] for c in pod["spec"]["containers"]]
        assert len(names) == len(set(names)), (pod["metadata"]["name"], names)
        apps.update(names)
    assert "log-shipper" in apps, "the log-agent DaemonSet ran"


def test_generated_names_draw_again_on_a_collision() -> None:
    """Five characters of 27 collide within a few thousand draws: a DaemonSet over 2,000
    nodes met AlreadyExists one time in seven. A repeated draw is drawn again, as the
    controller whose create fails does; the draws before any repeat are unchanged."""
    from synchronizer.simulator.pods import generated_names, random_suffix

    class Repeating(random.Random):
        """Gives the same bytes twice, then carries on."""

        def __init__(self) -> None:
            super().__init__(3)
            self.calls = 0

        def randbytes(self, n: int) -> bytes:
            self.calls += 1
            return b"\x00" * n if self.calls <= 2 else super().randbytes(n)

    names = generated_names(Repeating(), "kube-proxy-", 3)
    assert len(set(names)) == 3 and names[0] == "kube-proxy-bbbbb"
    plain = random.Random(8)
    assert generated_names(random.Random(8), "x-", 4) == [
        "x-" + random_suffix(plain) for _ in range(4)]
