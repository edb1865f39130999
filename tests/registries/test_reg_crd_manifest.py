"""The SyncCluster CRD the chart and manifests/ ship: its schema refuses a spec without
`bizId` (and one with both ways in), lists owner, state, pods and last sync as printer
columns, has the status subresource, and keeps every status field the product writes
(a real server prunes unknown fields: the simulator does too, and the product runs
against it end to end)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from registries_support import HOME_TOKEN, Home, running, settings_for

from synchronizer.registries.crd_status import desired_status
from synchronizer.registries.spec import ClusterSpec
from synchronizer.registries.synccluster import spec_of
from synchronizer.simulator import Simulator, populate
from synchronizer.simulator.crd import install_crd
from synchronizer.simulator.nodes import make_namespace
from synchronizer.summaries import Summary

ROOT = Path(__file__).resolve().parents[2]
CHART_CRD = ROOT / "charts" / "bkcmdb-synchronizer" / "crds" / "syncclusters.yaml"


def crd() -> dict[str, Any]:
    return yaml.safe_load(CHART_CRD.read_text())


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_manifests_carry_the_charts_crd() -> None:
    shipped = [d for d in yaml.safe_load_all((ROOT / "manifests" / "crd.yaml").read_text())
               if d]
    assert shipped == [crd()]


def test_printer_columns_and_status_subresource() -> None:
    version = crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Owner"] == ".status.owner" and columns["State"] == ".status.state"
    assert columns["Pods"] == ".status.pods" and columns["Last Sync"] == ".status.lastFullSync"


@pytest.mark.parametrize(("spec", "problem"), [
    ({"server": "https://a"}, "'bizId' is a required property"),
    ({"bizId": 1}, "is not valid under any of the given schemas"),
    ({"bizId": 1, "server": "https://a", "kubeconfigSecret": {"name": "k"}},
     "is valid under each of"),
    ({"bizId": -1, "server": "https://a"}, "-1 is less than the minimum"),
    ({"bizId": 1, "server": "ftp://a"}, "does not match"),
    ({"bizId": 1, "server": "https://a", "kinds": ["secrets"]}, "is not one of"),
])
def test_the_schema_refuses_bad_specs(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=problem):
        jsonschema.validate({"spec": spec}, schema())


def test_what_the_product_writes_is_valid() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns", "generation": 2},
           "spec": {"bizId": 2, "server": "https://a", "tokenSecret": {"name": "t"},
                    "kinds": ["pods"], "paused": False}}
    jsonschema.validate(obj, schema())
    for summary in (None, Summary(state="watching", reason="Synced",
                                  last_full_sync="2026-11-30T08:00:00+00:00", pods=3)):
        status = desired_status(obj, winner=spec_of(obj), conflict=None, owner="i1",
                                summary=summary, now=datetime.now(UTC))
        assert status is not None
        jsonschema.validate({**obj, "status": {k: v for k, v in status.items()
                                               if v is not None}}, schema())
    assert isinstance(spec_of(obj), ClusterSpec)


async def test_the_product_runs_against_the_shipped_crd(mysql_dsn: str) -> None:
    async with Simulator(bookmark_interval=0.2, seed=3) as sim:
        home_cluster = sim.add_cluster("home", token=HOME_TOKEN)
        install_crd(home_cluster, crd())
        home_cluster.create(make_namespace("bkcmdb"), resource="namespaces")
        await populate(sim.add_cluster("c1"), pods=5, rng=random.Random(1))
        home = Home(sim, home_cluster)
        try:
            async with running(settings_for(sim, mysql_dsn)):
                await home.create("a", {"clusterId": "c1", "bizId": 2,
                                        "server": sim.url_for("c1")})
                status = await home.until_status("a", state="Running", reason="Synced",
                                                 pods=5, owner="sync-a")
                assert status["lastFullSync"] and status["observedGeneration"] == 1
        finally:
            await home.aclose()
