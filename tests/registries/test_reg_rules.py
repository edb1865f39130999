"""The registries' rules as pure functions: a SyncCluster read as a spec, the status it
should show, the finalizer's board, the merge with held clusters and registries' own
conflicts, spec equality across registries, topology documents, BCS clusters."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from synchronizer.admin.document import Invalid, canonical, digest, parse, public
from synchronizer.registries import ClusterSpec, Origin, RegistryPull, SecretRef
from synchronizer.registries.bcs import spec_from
from synchronizer.registries.crd_status import Board, desired_status
from synchronizer.registries.synccluster import spec_of
from synchronizer.simulator.bcs import make_cluster
from synchronizer.summaries import Summary

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def sc(spec: dict[str, Any] | None, name: str = "a", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "generation": 3, "uid": "u",
                         **meta}, "spec": spec, "status": {}}


def test_a_sync_cluster_becomes_a_spec() -> None:
    spec = spec_of(sc({"bizId": 2, "server": "https://10.0.0.1:6443",
                       "tokenSecret": {"name": "t"}, "kinds": ["pods", "pods", "nodes"]}))
    assert spec == ClusterSpec(id="a", biz_id=2, server="https://10.0.0.1:6443",
                               token=SecretRef("secret", "ns/t#token"), kinds=("pods", "nodes"))
    assert (spec.origin, spec.source, spec.hold) == (Origin.CRD, "ns/a", None)
    by_kubeconfig = spec_of(sc({"clusterId": "x", "bizId": 0,
                                "kubeconfigSecret": {"name": "k", "key": "cfg"}}))
    assert by_kubeconfig.id == "x"
    assert by_kubeconfig.kubeconfig_ref == SecretRef("secret", "ns/k#cfg")
    paused = spec_of(sc({"bizId": 2, "server": "http://s", "paused": True}))
    assert paused.hold == "Paused: spec.paused is true"


def test_every_problem_of_a_spec_is_named_and_the_cluster_held() -> None:
    bad = spec_of(sc({"clusterId": "bad id", "server": "ftp://x",
                      "kubeconfigSecret": {"key": "k"}, "kinds": ["secrets"],
                      "insecureSkipTLSVerify": "yes"}))
    assert bad.hold is not None and bad.hold.startswith("InvalidSpec: ")
    for problem in ("spec.clusterId 'bad id'", "spec.bizId is required",
                    "spec.server 'ftp://x'", "spec.kubeconfigSecret.name is required",
                    "give exactly one of spec.server or spec.kubeconfigSecret",
                    "spec.kinds must be", "spec.insecureSkipTLSVerify"):
        assert problem in bad.hold, problem
    assert spec_of(sc(None)).hold == ("InvalidSpec: spec is required; spec.bizId is required;"
                                      " give exactly one of spec.server or"
                                      " spec.kubeconfigSecret")
    assert "spec.bizId must be" in (spec_of(sc({"bizId": True, "server": "http://s"})).hold
                                    or "")


def status_of(obj: Mapping[str, Any], **kw: Any) -> dict[str, Any] | None:
    spec = spec_of(obj)
    args: dict[str, Any] = {"winner": spec, "conflict": None, "owner": None, "summary": None,
                            "now": NOW}
    args.update(kw)
    return desired_status(obj, **args)


def ready(status: Mapping[str, Any] | None) -> tuple[str, str, str]:
    assert status is not None
    cond = status["conditions"][0]
    return status["state"], cond["status"], cond["reason"]


def test_the_status_names_what_is_going_on() -> None:
    good = sc({"bizId": 2, "server": "http://s"})
    assert ready(status_of(good)) == ("Pending", "False", "Pending")
    assert ready(status_of(good, owner="i1")) == ("Pending", "False", "Starting")
    synced = status_of(good, owner="i1", summary=Summary(
        state="watching", reason="Synced", last_full_sync="2026-11-30T07:59:59.5+00:00",
        pods=7))
    assert synced is not None and ready(synced) == ("Running", "True", "Synced")
    assert (synced["owner"], synced["pods"], synced["lastFullSync"],
            synced["observedGeneration"]) == ("i1", 7, "2026-11-30T07:59:59Z", 3)
    for reason, state in (("Syncing", "Running"), ("KindRefused", "Running"),
                          ("Unreachable", "Error"), ("SecretNotFound", "Error")):
        found = status_of(good, owner="i1", summary=Summary(state="x", reason=reason))
        assert ready(found) == (state, "False", reason)
    bad = sc({"server": "http://s"})
    assert ready(status_of(bad)) == ("Error", "False", "InvalidSpec")
    paused = sc({"bizId": 2, "server": "http://s", "paused": True})
    assert ready(status_of(paused)) == ("Paused", "False", "Paused")
    other = ClusterSpec(id="a", origin=Origin.STATIC, source="config")
    lost = status_of(good, winner=other, conflict="cluster a is declared by both ...")
    assert ready(lost) == ("Error", "False", "Conflict")
    assert lost is not None and lost["conditions"][0]["message"].startswith("cluster a is")
    assert status_of(sc({"bizId": 2, "server": "http://s"},
                        deletionTimestamp="2026-11-30T00:00:00Z")) is None


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    obj = sc({"bizId": 2, "server": "http://s"})
    obj["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    same = status_of(obj, owner="i1")  # still False, another reason
    assert same is not None and same["conditions"][0]["lastTransitionTime"] == (
        "2026-01-01T00:00:00Z")
    flipped = status_of(obj, owner="i1", summary=Summary(state="watching", reason="Synced"))
    assert flipped is not None and flipped["conditions"][0]["lastTransitionTime"] == (
        "2026-11-30T08:00:00Z")


def test_the_finalizer_board_releases_only_a_stopped_cluster() -> None:
    since = 4
    crd = (str(Origin.CRD), "ns/a")
    assert Board(pulled=4).waiting_for("c", "ns/a", since)  # no pull since the deletion
    assert Board(pulled=5, declared={"c": crd}).waiting_for("c", "ns/a", since)
    assert Board(pulled=5, assigned=frozenset({"c"})).waiting_for("c", "ns/a", since)
    assert Board(pulled=5, removing=frozenset({"c"})).waiting_for("c", "ns/a", since)
    assert Board(pulled=5).waiting_for("c", "ns/a", since) is None
    moved = Board(pulled=5, assigned=frozenset({"c"}), declared={"c": ("topology", "t")})
    assert moved.waiting_for("c", "ns/a", since) is None  # runs on under another registry


class Fixed:
    def __init__(self, origin: Origin, specs: dict[str, ClusterSpec],
                 conflicts: dict[str, str] | None = None) -> None:
        self.origin = origin
        self._specs = specs
        self.conflicts = conflicts or {}

    async def specs(self) -> Mapping[str, ClusterSpec]:
        return self._specs


async def test_the_merge_leaves_held_clusters_out_but_declared() -> None:
    crd = Fixed(Origin.CRD, {
        "a": ClusterSpec(id="a", origin=Origin.CRD, server="http://a"),
        "p": ClusterSpec(id="p", origin=Origin.CRD, server="http://p", hold="Paused: x")},
        conflicts={"d": "cluster d is declared by SyncClusters ns/1 and ns/2; using ns/1"})
    topo = Fixed(Origin.TOPOLOGY, {"a": ClusterSpec(id="a", origin=Origin.TOPOLOGY,
                                                    server="http://other")})
    pull = RegistryPull([topo, crd])
    merged = await pull.pull()
    assert set(merged) == {"a"} and merged["a"].origin is Origin.CRD
    assert set(pull.declared) == {"a", "p"} and pull.held == {"p": "Paused: x"}
    assert set(pull.conflicts) == {"a", "d"}
    assert [h.held for h in pull.health] == [1, 0]
    assert (pull.started, pull.generation) == (1, 1)
    pull.kick()
    async with asyncio.timeout(5):
        await pull.sleep(3600)  # returns at once: kicked


def test_a_spec_from_another_registry_with_the_same_connection_is_equal() -> None:
    one = ClusterSpec(id="c", biz_id=2, server="http://s", origin=Origin.TOPOLOGY, source="t")
    two = ClusterSpec(id="c", biz_id=2, server="http://s", origin=Origin.CRD, source="ns/c")
    assert one == two and one.fingerprint == two.fingerprint
    assert one != ClusterSpec(id="c", biz_id=3, server="http://s", origin=Origin.TOPOLOGY)
    assert one.to_json()["origin"] == "topology"  # still published with its origin


def test_a_topology_document_is_normalised() -> None:
    a = parse(orjson.dumps({"clusters": [
        {"server": "http://b/", "id": "b", "biz_id": 1, "token": "s3cret"},
        {"id": "a", "biz_id": 2, "server": "https://a", "kinds": ["pods", "pods"]}]}))
    b = parse(orjson.dumps({"clusters": [
        {"id": "a", "biz_id": 2, "server": "https://a", "kinds": ["pods"],
         "insecure_skip_tls_verify": False},
        {"id": "b", "server": "http://b", "biz_id": 1, "token": "s3cret"}]}))
    assert a == b and digest(canonical(a)) == digest(canonical(b))
    assert [c["id"] for c in a["clusters"]] == ["a", "b"]
    assert "s3cret" not in str(public(a)) and public(a)[1]["token_set"] is True
    with pytest.raises(Invalid) as caught:
        parse(b'{"clusters": []}')
    assert caught.value.problems == [
        "clusters: name at least one cluster (DELETE removes a topology)"]
    with pytest.raises(Invalid) as caught:
        parse(b'{"clusters": [{"id": "x", "biz_id": 1, "server": "http://x", "token": ""}]}')
    assert caught.value.problems == ["clusters[0].token: must be a non-empty string"]


def test_bcs_clusters_we_sync_and_the_ones_we_hold() -> None:
    url = "https://gw"
    spec = spec_from(make_cluster("BCS-K8S-1", businessID="7"), url)
    assert spec is not None and (spec.id, spec.biz_id, spec.server, spec.hold) == (
        "BCS-K8S-1", 7, "https://gw/clusters/BCS-K8S-1", None)
    assert spec.token == SecretRef("registry", "http") and spec.origin is Origin.HTTP
    creating = spec_from(make_cluster("BCS-K8S-2", status="CREATING"), url)
    assert creating is not None and creating.hold == "NotRunning: BCS status CREATING"
    assert spec_from(make_cluster("v", clusterType="virtual"), url) is None
    assert spec_from(make_cluster("m", engineType="mesos"), url) is None
