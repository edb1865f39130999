"""`verify --bkcmdb` as a user runs it: a subprocess comparing the simulated clusters with a
real (simulated) bk-cmdb over HTTP, in `verify`'s report shape and exit codes.

An instance first pushes a cluster and stops; then bk-cmdb is edited by hand through its
own API — a pod deleted, a namespace's labels changed, a namespace of no live object made —
and verify must count exactly that drift, per kind, in `--json`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import yaml
from pydantic import SecretStr
from tools_support import BIZ_ID, assert_one_line_error, caught_up, cli, populated, running

from synchronizer.bkcmdb import BkCmdbClient, BkCmdbSettings, NamespaceSpec
from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator
from synchronizer.settings import BkCmdbConfig
from synchronizer.simulator import Simulator

SECRET = "verify-secret-31d9"


@pytest.fixture
async def bk() -> AsyncIterator[BkCmdbSimulator]:
    sim = BkCmdbSimulator(auth=AuthConfig(mode="gateway", app_code="bcs", app_secret=SECRET))
    sim.model.hosts.add_business(BIZ_ID, "game")
    async with sim:
        yield sim


def _config(path: Path, sim: Simulator, dsn: str, bk: BkCmdbSimulator | None) -> Path:
    doc: dict[str, object] = {
        "cmdb": {"dsn": dsn},
        "clusters": [{"id": "east", "biz_id": BIZ_ID, "server": sim.url_for("east")}]}
    if bk is not None:
        doc["bkcmdb"] = {"url": bk.base_url, "app_code": "bcs"}
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_verify_bkcmdb_counts_hand_edits(sim: Simulator, bk: BkCmdbSimulator,
                                               sqlite_dsn: str, tmp_path: Path) -> None:
    cluster = await populated(sim, "east", 30, nodes=3, workloads=4)
    for node in cluster.objects("nodes"):
        for address in node["status"]["addresses"]:
            if address["type"] == "InternalIP":
                bk.model.hosts.add_host(address["address"], biz_id=BIZ_ID)
    from tools_support import settings_for

    settings = settings_for(sim, sqlite_dsn, ["east"]).model_copy(update={
        "bkcmdb": BkCmdbConfig(url=bk.base_url, app_code="bcs", app_secret=SecretStr(SECRET),
                               period=0.2, rate=500, burst=500)})
    async with running(settings) as instance:
        assert instance.bkcmdb is not None
        await caught_up(instance, sim, ["east"])
        start = instance.bkcmdb.board.clusters.get("east")
        before = start.pushes if start else 0
        await instance.bkcmdb.wait(lambda: (s := instance.bkcmdb.board.clusters.get("east"))
                                   is not None and s.pushes >= before + 2 and not s.pending)

    config = _config(tmp_path / "c.yaml", sim, sqlite_dsn, bk)
    env = {"BKCMDB_BKCMDB__APP_SECRET": SECRET}
    clean = await cli("verify", "--config", str(config), "--bkcmdb", "--json", env_extra=env)
    assert clean.code == 0, clean
    doc = orjson.loads(clean.out)
    assert (doc["missing"], doc["stale"], doc["extra"]) == (0, 0, 0)
    assert doc["listed"]["east"]["kinds"]["pods"] == 30

    async with BkCmdbClient(BkCmdbSettings(url=bk.base_url, app_code="bcs",
                                           app_secret=SECRET)) as client:
        (bk_cluster,) = await client.kube.list_clusters(BIZ_ID, uids=["east"])
        pods = await client.kube.list_pods(BIZ_ID, bk_cluster.id)
        await client.kube.delete_pods(BIZ_ID, [pods[0].id])
        namespaces = await client.kube.list_namespaces(BIZ_ID, bk_cluster.id)
        await client.kube.update_namespaces(BIZ_ID, [namespaces[0].id],
                                            {"labels": {"edited": "by-hand"}})
        await client.kube.batch_create_namespaces(BIZ_ID, [NamespaceSpec(
            cluster_id=bk_cluster.id, name="made-by-hand")])

    drift = await cli("verify", "--config", str(config), "--bkcmdb", "--json", env_extra=env)
    assert drift.code == 1, drift
    doc = orjson.loads(drift.out)
    assert (doc["missing"], doc["stale"], doc["extra"]) == (1, 1, 1), doc
    assert doc["kinds"]["pods"]["missing"] == 1
    assert doc["kinds"]["namespaces"] == {"missing": 0, "stale": 1, "extra": 1}
    assert doc["clusters"]["east"] == {"missing": 1, "stale": 1, "extra": 1}
    human = await cli("verify", "--config", str(config), "--bkcmdb", env_extra=env)
    assert human.code == 1 and "bk-cmdb drift" in human.out and "made-by-hand" in human.out
    for result in (clean, drift, human):
        assert SECRET not in result.out + result.err


async def test_verify_bkcmdb_needs_a_bkcmdb_section_and_a_reachable_one(
        sim: Simulator, sqlite_dsn: str, tmp_path: Path) -> None:
    await populated(sim, "east", 3)
    no_section = _config(tmp_path / "a.yaml", sim, sqlite_dsn, None)
    result = await cli("verify", "--config", str(no_section), "--bkcmdb")
    assert_one_line_error(result, "verify --bkcmdb: the config has no bkcmdb section")
    gone = BkCmdbSimulator()
    await gone.start()
    await gone.stop()  # a port nobody listens on
    config = _config(tmp_path / "b.yaml", sim, sqlite_dsn, gone)
    result = await cli("verify", "--config", str(config), "--bkcmdb",
                       env_extra={"BKCMDB_BKCMDB__APP_SECRET": SECRET})
    assert result.code == 2, result
    (line,) = result.err.strip().splitlines()
    assert "cluster east: bk-cmdb list_kube_cluster: cannot connect" in line, line
    assert "Traceback" not in result.err
