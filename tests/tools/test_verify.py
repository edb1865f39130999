"""`verify` against a real simulator and a real CMDB (SQLite and MariaDB).

Each kind of drift is planted the way it happens in life (a row lost or edited behind the
service's back, a Pod deleted or created while no instance runs) and must be found, named
by uid, and nothing else may be reported; after an instance has run and caught up, the
same check must report no drift. The CLI tests pin exit codes and the JSON shape.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest
from tools_support import (
    assert_one_line_error,
    cli,
    execute,
    populated,
    settings_for,
    sync_once,
    write_config,
)

from synchronizer.settings import SyncSettings
from synchronizer.simulator import Simulator, make_pod
from synchronizer.tools.verify import run_verify

PODS = 120


def _uids(report_examples: list[dict], key: str = "uid") -> set[str]:
    return {ex[key] for ex in report_examples}


async def test_plants_each_kind_of_drift(sim: Simulator, store_dsn: str) -> None:
    cluster = await populated(sim, "a", PODS)
    await sync_once(sim, store_dsn, ["a"])
    settings = settings_for(sim, store_dsn, ["a"])
    clean = await run_verify(settings)
    assert clean.exit_code == 0
    assert [c.listed for c in clean.clusters] == [PODS]
    assert clean.total("missing") == clean.total("stale") == clean.total("extra") == 0

    truth = cluster.truth()
    lost, edited, older, gone = truth[0], truth[1], truth[2], truth[3]
    assert execute(store_dsn, "DELETE FROM pods WHERE uid = ?", [lost["uid"]]) == 1
    assert execute(store_dsn, "UPDATE pods SET phase = 'Tampered' WHERE uid = ?",
                   [edited["uid"]]) == 1
    # An older version with identical content is what the merge rule leaves: not drift.
    assert execute(store_dsn, "UPDATE pods SET resource_version = resource_version - 1"
                   " WHERE uid = ?", [older["uid"]]) == 1
    cluster.delete(gone["namespace"], gone["name"])
    added = cluster.create(make_pod("ns-0", "added-while-stopped", rng=random.Random(9)))

    report = await run_verify(settings)
    assert report.exit_code == 1
    (drift,) = report.clusters
    assert drift.counts == {"missing": 2, "stale": 1, "extra": 1}
    assert _uids(drift.examples["missing"]) == {lost["uid"], added["metadata"]["uid"]}
    assert _uids(drift.examples["stale"]) == {edited["uid"]}
    assert drift.examples["stale"][0]["columns"] == ["phase"]
    assert _uids(drift.examples["extra"]) == {gone["uid"]}

    # Running the instance repairs all of it: a row lost, a Pod gone or added while
    # stopped, and the row edited behind its back (the content the database sums no
    # longer matches the checksum; an older version of equal content is left alone).
    await sync_once(sim, store_dsn, ["a"])
    after = await run_verify(settings)
    assert after.total("missing") == after.total("extra") == after.total("stale") == 0


async def test_rows_newer_than_the_list_are_not_drift(sim: Simulator, sqlite_dsn: str) -> None:
    cluster = await populated(sim, "a", 20)
    await sync_once(sim, sqlite_dsn, ["a"])
    row = cluster.truth()[0]
    # As if the Pod changed after verify's list and the instance had already written it.
    execute(sqlite_dsn, "UPDATE pods SET resource_version = 10000000, phase = 'Later'"
            " WHERE uid = ?", [row["uid"]])
    report = await run_verify(settings_for(sim, sqlite_dsn, ["a"]))
    assert report.exit_code == 0
    assert report.clusters[0].newer == 1


async def test_selected_clusters_only(sim: Simulator, sqlite_dsn: str) -> None:
    await populated(sim, "a", 10)
    await populated(sim, "b", 10, seed=4)
    await sync_once(sim, sqlite_dsn, ["a"])  # b is never synced: all missing
    settings = settings_for(sim, sqlite_dsn, ["a", "b"])
    assert (await run_verify(settings, ["a"])).exit_code == 0
    both = await run_verify(settings)
    assert {c.cluster: c.counts["missing"] for c in both.clusters} == {"a": 0, "b": 10}


async def test_cli_exit_codes_and_json(sim: Simulator, sqlite_dsn: str, tmp_path: Path) -> None:
    cluster = await populated(sim, "a", 30)
    await populated(sim, "b", 5, seed=4)
    await sync_once(sim, sqlite_dsn, ["a", "b"])
    config = write_config(tmp_path / "c.yaml", sim, sqlite_dsn, ["a", "b"])

    ok, human = await asyncio.gather(cli("verify", "--config", str(config), "--json"),
                                     cli("verify", "--config", str(config)))
    assert ok.code == 0, ok
    doc = orjson.loads(ok.out)
    assert {"missing", "stale", "extra", "clusters"} <= doc.keys()
    assert doc["missing"] == doc["stale"] == doc["extra"] == 0
    assert doc["clusters"] == {"a": {"missing": 0, "stale": 0, "extra": 0},
                               "b": {"missing": 0, "stale": 0, "extra": 0}}
    assert len(ok.out.strip().splitlines()) == 1

    assert human.code == 0 and "no drift" in human.out, human

    victim = cluster.truth()[0]
    cluster.delete(victim["namespace"], victim["name"])
    drift, table, unknown = await asyncio.gather(
        cli("verify", "--config", str(config), "--json", "--cluster", "a"),
        cli("verify", "--config", str(config), "--cluster", "a"),
        cli("verify", "--config", str(config), "--cluster", "nope"))
    assert drift.code == 1, drift
    doc = orjson.loads(drift.out)
    assert (doc["missing"], doc["stale"], doc["extra"]) == (0, 0, 1)
    assert doc["clusters"] == {"a": {"missing": 0, "stale": 0, "extra": 1}}
    assert all(isinstance(doc[k], int) for k in ("missing", "stale", "extra"))
    assert doc["examples"]["a"]["extra"][0]["uid"] == victim["uid"]

    assert table.code == 1 and victim["uid"] in table.out, table

    assert_one_line_error(unknown, "unknown cluster nope")


async def test_cli_errors_are_one_line(tmp_path: Path, sqlite_dsn: str) -> None:
    # A cluster nobody answers for; the CMDB file exists (created by opening it once).
    from synchronizer.cmdb import open_store

    await (await open_store(sqlite_dsn)).close()
    down = write_config(tmp_path / "down.yaml", None, sqlite_dsn, ["a"])
    result = await cli("verify", "--config", str(down))
    assert_one_line_error(result, "cluster a", "127.0.0.1:1")

    secret = "s3cr3t-pw"
    cmdb_down = write_config(tmp_path / "db.yaml", None,
                             f"mysql://root:{secret}@127.0.0.1:1/cmdb", ["a"])
    result = await cli("verify", "--config", str(cmdb_down), "--json")
    assert_one_line_error(result, "cmdb.dsn", "127.0.0.1:1")
    assert secret not in result.err and result.out == ""

    no_file = write_config(tmp_path / "nofile.yaml", None,
                           f"sqlite:///{tmp_path / 'absent.db'}", ["a"])
    result = await cli("verify", "--config", str(no_file))
    assert_one_line_error(result, "cmdb.dsn", "no such database file")
    assert not (tmp_path / "absent.db").exists()  # verify never writes, not even a file


@pytest.mark.parametrize("as_json", [False, True])
async def test_cli_bad_config(tmp_path: Path, as_json: bool) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters:\n  - id: a\n    server: http://x\n    bogus: 1\n")
    result = await cli("verify", "--config", str(bad), *(["--json"] if as_json else []))
    assert_one_line_error(result, "config: clusters.0.bogus: unknown key")


async def test_list_restarts_after_expired(sim: Simulator, sqlite_dsn: str) -> None:
    cluster = await populated(sim, "a", 60)
    await sync_once(sim, sqlite_dsn, ["a"])
    settings = settings_for(sim, sqlite_dsn, ["a"])
    settings = settings.model_copy(update={"sync": SyncSettings(page_size=25, kinds=["pods"])})
    lists_before = cluster.requests["list"]
    cluster.fail_next(410, on="list", after_pages=1, resource="pods")  # 2nd page expires
    report = await run_verify(settings)
    assert report.exit_code == 0, report
    assert report.clusters[0].listed == 60
    assert cluster.requests["list"] - lists_before == 2 + 3  # 2 pages, then 3 in full
