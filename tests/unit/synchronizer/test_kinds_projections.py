"""Nodes, namespaces and workloads: what is stored, and that status-only noise is not."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from synchronizer.kinds import NAMESPACES, NODES, WORKLOADS, BadObject, Projection, Resource
from synchronizer.kinds.workloads import CRONJOB, DAEMONSET, DEPLOYMENT, JOB, STATEFULSET

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def project(kind: Any, obj: dict[str, Any], resource: Resource | None = None) -> Any:
    ctx = Projection(resource=resource or kind.resources[0], biz_id=7, observed=NOW)
    return kind.project(orjson.dumps(obj), ctx)


NODE = {
    "kind": "Node", "apiVersion": "v1",
    "metadata": {"name": "node-1", "uid": "n-1", "resourceVersion": "10",
                 "labels": {"zone": "gz-1"}},
    "spec": {"unschedulable": True},
    "status": {
        "addresses": [{"type": "Hostname", "address": "node-1"},
                      {"type": "InternalIP", "address": "10.0.0.5"},
                      {"type": "InternalIP", "address": "10.0.0.6"}],
        "conditions": [
            {"type": "MemoryPressure", "status": "False",
             "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
             "lastTransitionTime": "2025-12-01T00:00:00Z", "reason": "KubeletReady"}],
        "nodeInfo": {"kubeletVersion": "v1.29.3", "kernelVersion": "6.1"},
        "images": [{"names": ["registry/app:1"], "sizeBytes": 123}],
        "capacity": {"cpu": "8"},
    },
}


def test_node_fields() -> None:
    fields = project(NODES, NODE).fields
    assert fields == {"name": "node-1", "biz_id": 7, "labels": '{"zone":"gz-1"}',
                      "internal_ip": "10.0.0.5", "kubelet_version": "v1.29.3", "ready": "True",
                      "unschedulable": 1, "truncated": ""}


def test_node_heartbeats_and_status_noise_do_not_change_the_checksum() -> None:
    before = project(NODES, NODE)
    noisy = copy.deepcopy(NODE)
    noisy["metadata"]["resourceVersion"] = "11"
    for condition in noisy["status"]["conditions"]:
        condition["lastHeartbeatTime"] = "2026-01-01T00:00:40Z"
    noisy["status"]["images"].append({"names": ["registry/app:2"], "sizeBytes": 9})
    noisy["status"]["capacity"]["cpu"] = "16"
    after = project(NODES, noisy)
    assert after.checksum == before.checksum and after.version == 11
    noisy["status"]["conditions"][1]["status"] = "False"
    assert project(NODES, noisy).checksum != before.checksum


@pytest.mark.parametrize(("conditions", "ready"), [
    ([], "Unknown"), ([{"type": "Ready", "status": "Unknown"}], "Unknown"),
    ([{"type": "Ready", "status": "False"}], "False"), (None, "Unknown"),
])
def test_node_readiness(conditions: Any, ready: str) -> None:
    node = copy.deepcopy(NODE)
    node["status"]["conditions"] = conditions
    node["status"].pop("addresses")
    fields = project(NODES, node).fields
    assert fields["ready"] == ready and fields["internal_ip"] == ""


def test_namespace_fields() -> None:
    ns = {"metadata": {"name": "payments", "uid": "ns-1", "resourceVersion": "3",
                       "labels": None}, "status": {"phase": "Terminating"}}
    assert project(NAMESPACES, ns).fields == {
        "name": "payments", "biz_id": 7, "labels": "{}", "phase": "Terminating", "truncated": ""}


def workload(kind: str, spec: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "w", "namespace": "ns", "uid": f"u-{kind}",
                                       "resourceVersion": "5", "labels": {"app": "w"}},
            "spec": spec, "status": status}


TEMPLATE = {"spec": {"containers": [{"name": "a", "image": "app:1"},
                                   {"name": "b", "image": "sidecar:2"}],
                     "initContainers": [{"name": "i", "image": "init:1"}]}}


@pytest.mark.parametrize(("resource", "spec", "replicas"), [
    (DEPLOYMENT, {"replicas": 3, "template": TEMPLATE}, 3),
    (DEPLOYMENT, {"template": TEMPLATE}, 1),  # the API's default
    (STATEFULSET, {"replicas": 0, "template": TEMPLATE}, 0),
    (DAEMONSET, {"template": TEMPLATE}, None),
    (JOB, {"parallelism": 2, "template": TEMPLATE}, None),
    (CRONJOB, {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": TEMPLATE}}}, None),
])
def test_workload_fields(resource: Resource, spec: dict[str, Any], replicas: Any) -> None:
    fields = project(WORKLOADS, workload(resource.kind, spec), resource).fields
    assert fields["kind"] == resource.kind and fields["replicas"] == replicas
    assert fields["images"] == '["app:1","sidecar:2"]'  # containers only, in order
    assert (fields["namespace"], fields["name"]) == ("ns", "w")


def test_ready_replica_counts_do_not_change_a_workload_checksum() -> None:
    spec = {"replicas": 3, "template": TEMPLATE}
    a = project(WORKLOADS, workload("Deployment", spec, readyReplicas=1), DEPLOYMENT)
    b = project(WORKLOADS, workload("Deployment", spec, readyReplicas=3, availableReplicas=3,
                                    observedGeneration=9), DEPLOYMENT)
    assert a.checksum == b.checksum
    assert project(WORKLOADS, workload("Deployment", {**spec, "replicas": 4}),
                   DEPLOYMENT).checksum != a.checksum


@pytest.mark.parametrize(("obj", "words"), [
    ({"metadata": {"name": "x", "resourceVersion": "1"}}, "missing metadata.uid"),
    ({"metadata": {"uid": "u", "resourceVersion": "1"}}, "missing metadata.name"),
    ({"metadata": {"uid": "u", "name": "x", "resourceVersion": "x"}}, "not an integer"),
    ({"metadata": {"uid": "u", "name": "x", "resourceVersion": "1"},
      "status": {"conditions": "yes"}}, "Expected `array"),
])
def test_unusable_nodes_are_one_line_errors_that_keep_the_uid(obj: Any, words: str) -> None:
    with pytest.raises(BadObject, match=words) as info:
        project(NODES, obj)
    assert "\n" not in str(info.value)
    if "uid" in obj["metadata"]:
        assert info.value.uid == "u"
