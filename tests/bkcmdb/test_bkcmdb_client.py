"""The client against the simulator over real HTTP, in both dialects (gateway and direct)."""

from __future__ import annotations

import pytest
from bkcmdb_support import BIZ, OTHER_BIZ, FakeTime, Observed, settings_for

from synchronizer.bkcmdb import (
    BkCmdbClient,
    ClusterSpec,
    ContainerSpec,
    DuplicateError,
    KubeCluster,
    NamespaceSpec,
    NodeSpec,
    PodSpec,
    RejectedError,
    WorkloadSpec,
)
from synchronizer.bkcmdb.simulator import BkCmdbSimulator


async def _cluster(cmdb: BkCmdbClient, uid: str = "cluster-a") -> KubeCluster:
    return await cmdb.kube.ensure_cluster(ClusterSpec(uid=uid, name=uid, biz_id=BIZ))


async def test_the_whole_kube_chain_round_trips_in_both_dialects(
        sim: BkCmdbSimulator, cmdb: BkCmdbClient, observed: Observed) -> None:
    cluster = await _cluster(cmdb)
    assert cluster.uid == "cluster-a" and cluster.biz_id == BIZ
    ns = await cmdb.kube.create_namespaces(BIZ, [NamespaceSpec(
        cluster_id=cluster.id, name="default", labels={"team": "a"})])
    ns_id = ns[(cluster.id, "default")]
    hosts = await cmdb.topology.find_hosts(BIZ, ["10.1.0.1", "10.9.0.1", "10.7.7.7"])
    assert set(hosts) == {"10.1.0.1"}, "a host of another business or none at all is not found"
    nodes = await cmdb.kube.create_nodes(BIZ, [NodeSpec(
        cluster_id=cluster.id, host_id=hosts["10.1.0.1"].id, name="node-1",
        internal_ip=("10.1.0.1",))])
    workloads = await cmdb.kube.create_workloads(BIZ, [
        WorkloadSpec(kind="deployment", namespace_id=ns_id, name="web", replicas=3),
        WorkloadSpec(kind="pods", namespace_id=ns_id, name="pods")])
    pods = await cmdb.kube.create_pods([PodSpec(
        biz_id=BIZ, cluster_id=cluster.id, namespace_id=ns_id,
        node_id=nodes[(cluster.id, "node-1")], host_id=hosts["10.1.0.1"].id, ref_kind="deployment",
        ref_id=workloads[("deployment", ns_id, "web")], name="web-1", ip="172.16.0.5",
        labels={"app.kubernetes.io/name": "web"},
        containers=(ContainerSpec(name="nginx", image="nginx:1", container_uid="containerd://a"),))])

    listed = await cmdb.kube.list_pods(BIZ, cluster.id)
    assert [(p.key, p.id) for p in listed] == list(pods.items())
    assert listed[0].labels == {"app.kubernetes.io/name": "web"}, "dots decoded back"
    assert sim.model.pods[listed[0].id]["labels"] == {"app\\u002ekubernetes\\u002eio/name": "web"}
    assert sim.model.containers[1]["container_uid"] == "containerd://a"
    assert sim.model.pods[listed[0].id]["operator"] == ["admin"], "bk-cmdb requires an operator"
    [deployment] = await cmdb.kube.list_workloads(BIZ, "deployment", cluster_id=cluster.id)
    assert (deployment.name, deployment.replicas, deployment.namespace) == ("web", 3, "default")
    [node] = await cmdb.kube.list_nodes(BIZ, cluster.id)
    assert node.host_id == hosts["10.1.0.1"].id and node.internal_ip == ("10.1.0.1",)

    # deletes in reverse dependency order, then everything is gone
    await cmdb.kube.delete_pods(BIZ, pods.values())
    await cmdb.kube.delete_workloads(BIZ, "deployment", [deployment.id])
    await cmdb.kube.delete_workloads(BIZ, "pods", [workloads[("pods", ns_id, "pods")]])
    await cmdb.kube.delete_nodes(BIZ, [node.id])
    await cmdb.kube.delete_namespaces(BIZ, [ns_id])
    await cmdb.kube.delete_clusters(BIZ, [cluster.id])
    await cmdb.kube.delete_clusters(BIZ, [cluster.id])  # gone already: still fine
    assert await cmdb.kube.list_clusters(BIZ) == []
    assert not sim.model.containers
    endpoints = {call[0] for call in observed.calls}
    assert "batch_create_kube_pod" in endpoints
    assert all("/" not in name and not any(ch.isdigit() for ch in name) for name in endpoints)
    assert {call[1] for call in observed.calls} == {"success"}


async def test_updates_change_editable_fields_in_place(cmdb: BkCmdbClient,
                                                       sim: BkCmdbSimulator) -> None:
    cluster = await _cluster(cmdb)
    ns = await cmdb.kube.create_namespaces(BIZ, [NamespaceSpec(cluster_id=cluster.id, name="a")])
    ns_id = ns[(cluster.id, "a")]
    wl = await cmdb.kube.create_workloads(BIZ, [WorkloadSpec(
        kind="statefulSet", namespace_id=ns_id, name="db", replicas=1)])
    await cmdb.kube.update_namespaces(BIZ, [ns_id], {"labels": {"x": "y"}})
    await cmdb.kube.update_workloads(BIZ, "statefulSet", wl.values(), {"replicas": 5})
    [listed_ns] = await cmdb.kube.list_namespaces(BIZ, cluster.id)
    [listed_wl] = await cmdb.kube.list_workloads(BIZ, "statefulSet", namespace_id=ns_id)
    assert listed_ns.labels == {"x": "y"} and listed_wl.replicas == 5
    with pytest.raises(RejectedError) as info:
        await cmdb.kube.update_namespaces(BIZ, [ns_id], {"name": "renamed"})
    assert info.value.code == 1199011 and "name" in str(info.value)


async def test_creates_are_idempotent_and_a_raw_duplicate_is_recognised(
        cmdb: BkCmdbClient, sim: BkCmdbSimulator) -> None:
    cluster = await _cluster(cmdb)
    again = await _cluster(cmdb)
    assert again.id == cluster.id and len(sim.model.clusters) == 1
    specs = [NamespaceSpec(cluster_id=cluster.id, name=f"ns-{i}") for i in range(3)]
    first = await cmdb.kube.create_namespaces(BIZ, specs)
    with pytest.raises(DuplicateError) as info:
        await cmdb.kube.batch_create_namespaces(BIZ, specs[:1])
    assert info.value.code == 1199014 and "ns-0" in info.value.message
    more = [*specs, NamespaceSpec(cluster_id=cluster.id, name="ns-new")]
    second = await cmdb.kube.create_namespaces(BIZ, more)
    assert {k: second[k] for k in first} == first, "existing namespaces adopted, same ids"
    assert len(sim.model.namespaces) == 4


async def test_references_are_checked_and_deletes_refused_while_referred(
        cmdb: BkCmdbClient, sim: BkCmdbSimulator) -> None:
    cluster = await _cluster(cmdb)
    with pytest.raises(RejectedError) as info:
        await cmdb.kube.create_nodes(BIZ, [NodeSpec(
            cluster_id=cluster.id, host_id=4, name="n", internal_ip=("10.9.0.1",))])
    assert info.value.code == 1199006 and "bk_host_id" in info.value.message, \
        "a host of another business is refused"
    ns = await cmdb.kube.create_namespaces(BIZ, [NamespaceSpec(cluster_id=cluster.id, name="a")])
    await cmdb.kube.create_workloads(BIZ, [WorkloadSpec(
        kind="job", namespace_id=ns[(cluster.id, "a")], name="once")])
    with pytest.raises(RejectedError) as info:
        await cmdb.kube.delete_namespaces(BIZ, ns.values())
    assert info.value.code == 1199006
    with pytest.raises(RejectedError):
        await cmdb.kube.delete_clusters(BIZ, [cluster.id])
    assert len(sim.model.namespaces) == 1 and len(sim.model.clusters) == 1
    assert await cmdb.topology.find_hosts(OTHER_BIZ, ["10.9.0.1"]) != {}


async def test_no_request_exceeds_the_type_limits_and_lists_page_by_500(
        sim: BkCmdbSimulator, fake_time: FakeTime) -> None:
    for ip in range(4, 255):
        sim.model.hosts.add_host(f"10.1.0.{ip}", biz_id=BIZ)
    sim.model.hosts.add_host("10.1.1.1", biz_id=BIZ)
    async with BkCmdbClient(settings_for(sim), clock=fake_time.clock,
                            sleep=fake_time.sleep) as cmdb:
        cluster = await _cluster(cmdb)
        ns = await cmdb.kube.create_namespaces(BIZ, [
            NamespaceSpec(cluster_id=cluster.id, name=f"ns-{i}") for i in range(1201)])
        hosts = await cmdb.topology.find_hosts(BIZ, [f"10.1.0.{i}" for i in range(1, 255)])
        nodes = await cmdb.kube.create_nodes(BIZ, [NodeSpec(
            cluster_id=cluster.id, host_id=h.id, name=f"node-{ip}", internal_ip=(ip,))
            for ip, h in hosts.items()])
        ns0 = ns[(cluster.id, "ns-0")]
        wl = await cmdb.kube.create_workloads(BIZ, [WorkloadSpec(
            kind="pods", namespace_id=ns0, name="pods")])
        node_ids = list(nodes.values())
        pods = await cmdb.kube.create_pods([PodSpec(
            biz_id=BIZ, cluster_id=cluster.id, namespace_id=ns0, node_id=node_ids[i % 250],
            host_id=1, ref_kind="pods", ref_id=wl[("pods", ns0, "pods")], name=f"p-{i}")
            for i in range(450)])
        sim.stats.reset()
        listed = await cmdb.kube.list_namespaces(BIZ, cluster.id)
        assert len(listed) == 1201 and sim.stats.requests["list_kube_namespace"] == 3
        await cmdb.kube.delete_pods(BIZ, pods.values())
        await cmdb.kube.delete_nodes(BIZ, nodes.values())
        await cmdb.kube.update_namespaces(BIZ, ns.values(), {"labels": {}})
    assert len(nodes) == 254 and len(pods) == 450
    largest = sim.stats.largest_batch
    assert largest["batch_delete_kube_pod"] == 200 and largest["batch_delete_kube_node"] == 100
    assert largest["batch_update_kube_namespace"] == 200
    assert sim.stats.requests["batch_delete_kube_pod"] == 3


async def test_batch_size_lowers_every_write_below_the_type_limit(sim: BkCmdbSimulator) -> None:
    async with BkCmdbClient(settings_for(sim, batch_size=30)) as cmdb:
        cluster = await _cluster(cmdb)
        await cmdb.kube.create_namespaces(BIZ, [
            NamespaceSpec(cluster_id=cluster.id, name=f"n{i}") for i in range(100)])
    assert sim.stats.largest_batch["batch_create_kube_namespace"] == 30
    assert sim.stats.requests["batch_create_kube_namespace"] == 4


async def test_over_limit_single_requests_are_refused_before_sending(
        cmdb: BkCmdbClient, sim: BkCmdbSimulator) -> None:
    with pytest.raises(ValueError, match="allows 100"):
        await cmdb.kube.batch_create_nodes(BIZ, [NodeSpec(
            cluster_id=1, host_id=1, name=f"n{i}", internal_ip=("10.1.0.1",)) for i in range(101)])
    with pytest.raises(ValueError, match="allows 200"):
        await cmdb.kube.batch_create_namespaces(BIZ, [
            NamespaceSpec(cluster_id=1, name=f"n{i}") for i in range(201)])
    assert sum(sim.stats.requests.values()) == 0


async def test_container_server_pods_are_placed_updated_and_deleted(
        cmdb: BkCmdbClient, sim: BkCmdbSimulator) -> None:
    default = await cmdb.container.place(BIZ, {})
    annotated = await cmdb.container.place(BIZ, {"set.bkcmdb.bkbcs.tencent.com": "web",
                                                 "module.bkcmdb.bkbcs.tencent.com": "nginx"})
    unknown = await cmdb.container.place(BIZ, {"set.bkcmdb.bkbcs.tencent.com": "web",
                                               "module.bkcmdb.bkbcs.tencent.com": "nope"})
    assert default == unknown != annotated
    fields = {"bk_pod_cluster": "cluster-a", "bk_pod_namespace": "default", "bk_pod_name": "p",
              "bk_pod_uuid": "u-1", "bk_module_id": annotated, "bk_pod_ip": "172.16.0.1"}
    pid = await cmdb.container.create_pod(BIZ, fields)
    assert await cmdb.container.create_pod(BIZ, fields) == pid, "a second create adopts"
    key = ("cluster-a", "default", "p")
    assert await cmdb.container.update_pod(BIZ, key, {"bk_pod_ip": "172.16.0.2"}) == 1
    [pod] = await cmdb.container.list_pods(BIZ, "cluster-a")
    assert pod.key == key and pod.fields["bk_pod_ip"] == "172.16.0.2"
    assert await cmdb.container.delete_pod(BIZ, key) == 1
    assert await cmdb.container.delete_pod(BIZ, key) == 0
    assert sim.model.container.pods == {}


async def test_a_business_without_the_default_module_is_one_clear_error(
        cmdb: BkCmdbClient, sim: BkCmdbSimulator) -> None:
    from synchronizer.bkcmdb import NoDefaultModule
    with pytest.raises(NoDefaultModule) as info:
        await cmdb.container.place(OTHER_BIZ, {})
    assert "business 3 has no module bkbcs/bkbcs" in str(info.value)
    assert "\n" not in str(info.value)
    sim.model.hosts.add_module(OTHER_BIZ, "bkbcs", "bkbcs")
    cmdb.topology_cache.forget(OTHER_BIZ)
    assert await cmdb.container.place(OTHER_BIZ, {}) > 0
