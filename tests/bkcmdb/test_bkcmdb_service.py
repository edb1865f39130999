"""The bk-cmdb pusher inside a real instance: a simulated cluster synced into real MariaDB
or SQLite tables, pushed to the bk-cmdb simulator over HTTP, and checked by `verify
--bkcmdb`'s independent comparison.

- TEST-MATRIX row 37: bk-cmdb unreachable for a while — the tables keep syncing, /readyz
  stays ready, the pending gauge rises, memory stays the size of the tables, and bk-cmdb
  converges once it is back.
- A cluster removed from every registry is emptied in bk-cmdb and its task dropped, by a
  later process that never owned it (the durable task and ledger are all it has).
- Secrets: the app secret never reaches logs, /status or /metrics, even when bk-cmdb
  refuses it.

Waits are on the instance's own signals (`caught_up`, a push report), never on sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from instance_support import BIZ_ID, caught_up, populated, running, settings_for
from pydantic import SecretStr

from synchronizer.app import Instance
from synchronizer.bkcmdb.pusher import PUSH_JOB, ClusterPushStatus
from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator
from synchronizer.bkcmdb_service import WAITING
from synchronizer.settings import BkCmdbConfig, Settings, SyncSettings
from synchronizer.simulator import Simulator
from synchronizer.tools.verify_bkcmdb import run_bkcmdb_verify

SECRET = "Bk-App-Secret-5e1f-do-not-leak"
TIMEOUT = 120


@pytest.fixture
async def kube() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def bk() -> AsyncIterator[BkCmdbSimulator]:
    sim = BkCmdbSimulator(auth=AuthConfig(mode="gateway", app_code="bcs", app_secret=SECRET))
    sim.model.hosts.add_business(BIZ_ID, "game")
    sim.model.hosts.add_module(BIZ_ID, "bkbcs", "bkbcs")
    async with sim:
        yield sim


def seed_hosts(bk: BkCmdbSimulator, kube: Simulator, cluster: str) -> int:
    """A host in the business for every node's InternalIP (as an operator's CMDB has)."""
    ips = {a["address"] for node in kube.cluster(cluster).objects("nodes")
           for a in node["status"].get("addresses", []) if a.get("type") == "InternalIP"}
    for ip in sorted(ips):
        bk.model.hosts.add_host(ip, biz_id=BIZ_ID)
    return len(ips)


def with_bkcmdb(settings: Settings, bk: BkCmdbSimulator, **overrides: Any) -> Settings:
    config = BkCmdbConfig(url=bk.base_url, app_code="bcs", app_secret=SecretStr(SECRET),
                          period=0.2, rate=1000, burst=1000, timeout=5,
                          **overrides)
    return settings.model_copy(update={"bkcmdb": config,
                                       "sync": SyncSettings(backoff_max=1.0)})


def board(instance: Instance, cluster: str) -> ClusterPushStatus:
    assert instance.bkcmdb is not None
    return instance.bkcmdb.board.clusters.get(cluster) or ClusterPushStatus()


def owed(status: ClusterPushStatus) -> int:
    """Pending objects a push could make equal (not those waiting for a host or an id)."""
    return sum(n for reason, n in status.pending_by_reason.items() if reason not in WAITING)


async def settled(instance: Instance, cluster: str) -> ClusterPushStatus:
    """Wait for two more pushes, the last one clean with nothing owed: one push may have
    read the tables before the latest rows landed, the next one cannot have."""
    assert instance.bkcmdb is not None
    start = board(instance, cluster).pushes

    def done() -> bool:
        st = board(instance, cluster)
        return st.pushes >= start + 2 and not st.last_error and owed(st) == 0
    await instance.bkcmdb.wait(done)
    return board(instance, cluster)


async def no_drift(settings: Settings, *clusters: str) -> None:
    report = await run_bkcmdb_verify(settings, list(clusters))
    assert not report.errors, report.errors
    assert report.exit_code == 0, report.as_json()
    assert sum(c.listed for c in report.clusters) > 0


async def converged(instance: Instance, settings: Settings, *clusters: str) -> None:
    """bk-cmdb equals the tables, looked at while the instance still pushes: after a
    settled push, or after a few more (the push is level-triggered: what one push left,
    the next one makes equal; a bound, not a hope)."""
    for _ in range(4):
        report = await run_bkcmdb_verify(settings, list(clusters))
        if report.exit_code == 0:
            break
        for cluster in clusters:
            await settled(instance, cluster)
    await no_drift(settings, *clusters)


async def test_row_37_bkcmdb_down_for_a_while(kube: Simulator, bk: BkCmdbSimulator,
                                             mysql_dsn: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await populated(kube, "c1", 80, nodes=4, workloads=6)
    assert seed_hosts(bk, kube, "c1") == 4
    settings = with_bkcmdb(settings_for(kube, mysql_dsn, ["c1"]), bk)
    async with running(settings) as instance, httpx.AsyncClient(timeout=10) as http:
        assert instance.bkcmdb is not None
        async with asyncio.timeout(TIMEOUT):
            await caught_up(instance, kube, ["c1"])
            first = await settled(instance, "c1")
            assert first.last_full_at is not None and first.dead_letters == 0
            await no_drift(settings, "c1")
            api = f"http://127.0.0.1:{instance.http.bound[0]}"
            metrics = f"http://127.0.0.1:{instance.http.bound[-1]}/metrics"

            await bk.stop()  # bk-cmdb unreachable; the model keeps its state
            churn = kube.controllers("c1", seed=11)
            churn.step("pods", 60)
            churn.step("workloads", 5)
            await caught_up(instance, kube, ["c1"])  # the tables keep syncing
            down = board(instance, "c1").pushes
            await instance.bkcmdb.wait(lambda: board(instance, "c1").pushes > down
                                       and board(instance, "c1").last_error != ""
                                       and board(instance, "c1").pending > 0)
            st = board(instance, "c1")
            assert st.last_error, "a failed push says why"
            assert (await http.get(f"{api}/readyz")).status_code == 200
            gauge = [line for line in (await http.get(metrics)).text.splitlines()
                     if line.startswith('bkcmdb_sync_bkcmdb_pending{cluster="c1"}')]
            assert gauge and float(gauge[0].split()[-1]) > 0, gauge
            doc = (await http.get(f"{api}/status")).json()
            (cluster,) = doc["clusters"]
            assert cluster["bkcmdb"]["state"] == "error" and cluster["bkcmdb"]["pending"] > 0
            assert cluster["state"] == "watching"
            # memory is the tables' Active rows, however much changed meanwhile
            assert instance.bkcmdb.pusher is not None
            active = sum(cluster["kinds"].values())
            assert 0 < instance.bkcmdb.pusher.cached("c1") <= active

            await bk.start(port=bk.port)  # back
            after = await settled(instance, "c1")
            assert after.pending == sum(n for r, n in after.pending_by_reason.items()
                                        if r in WAITING)
            await no_drift(settings, "c1")
            requests = (await http.get(metrics)).text
            assert 'bkcmdb_sync_bkcmdb_requests_total{endpoint="batch_create_kube_pod",' \
                   'status="success"}' in requests
            assert "bkcmdb_sync_bkcmdb_request_duration_seconds_bucket" in requests
            for text in (requests, (await http.get(f"{api}/status")).text, caplog.text):
                assert SECRET not in text
    assert SECRET not in caplog.text


async def test_a_removed_cluster_is_emptied_by_a_later_process(
        kube: Simulator, bk: BkCmdbSimulator, sqlite_dsn: str,
        caplog: pytest.LogCaptureFixture) -> None:
    for cluster in ("keep", "gone"):
        await populated(kube, cluster, 20, nodes=2, workloads=3, seed=len(cluster))
        seed_hosts(bk, kube, cluster)
    both = with_bkcmdb(settings_for(kube, sqlite_dsn, ["keep", "gone"]), bk)
    async with running(both) as instance:
        async with asyncio.timeout(TIMEOUT):
            await caught_up(instance, kube, ["keep", "gone"])
            await settled(instance, "keep")
            await settled(instance, "gone")
            await converged(instance, both, "keep", "gone")
    assert sorted(c["uid"] for c in bk.model.clusters.values()) == ["gone", "keep"]

    one = with_bkcmdb(settings_for(kube, sqlite_dsn, ["keep"]), bk)
    async with running(one) as instance:
        assert instance.bkcmdb is not None

        def emptied() -> bool:
            """`gone` was taken up as removed, emptied in bk-cmdb and let go: the end
            state, not the one between (`removing` in /status), which can start and end
            between two looks (each look follows a push)."""
            assert instance.bkcmdb is not None
            targets = instance.bkcmdb.targets
            return (targets is not None and not targets.removed
                    and "gone" not in {c["uid"] for c in bk.model.clusters.values()}
                    and board(instance, "keep").pushes > 0)

        with caplog.at_level(logging.INFO):
            async with asyncio.timeout(TIMEOUT):
                await instance.bkcmdb.wait(emptied)
        assert "cluster gone: removed from every registry; emptying it in bk-cmdb" \
            in caplog.text
        async with asyncio.timeout(TIMEOUT):
            store = instance.store
            assert store is not None
            tasks = store.bkcmdb_tables(clock=lambda: 0.0).tasks  # type: ignore[attr-defined]
            assert await tasks.clusters(PUSH_JOB) == ["keep"]
            assert not await store.bkcmdb_tables(  # type: ignore[attr-defined]
                clock=lambda: 0.0).ledger.entries("gone")
    assert [c["uid"] for c in bk.model.clusters.values()] == ["keep"]
    model = bk.model
    gone_objects = [r for table in (model.namespaces, model.nodes, model.pods)
                    for r in table.values() if r.get("cluster_uid") == "gone"]
    assert gone_objects == []
    await no_drift(one, "keep")


async def test_a_refused_secret_is_reported_and_never_shown(
        kube: Simulator, bk: BkCmdbSimulator, sqlite_dsn: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await populated(kube, "c1", 10, nodes=1, workloads=2)
    seed_hosts(bk, kube, "c1")
    wrong = "wrong-" + SECRET
    settings = with_bkcmdb(settings_for(kube, sqlite_dsn, ["c1"]), bk)
    assert settings.bkcmdb is not None
    settings = settings.model_copy(update={"bkcmdb": settings.bkcmdb.model_copy(
        update={"app_secret": SecretStr(wrong)})})
    async with running(settings) as instance, httpx.AsyncClient(timeout=10) as http:
        assert instance.bkcmdb is not None
        async with asyncio.timeout(TIMEOUT):
            await instance.bkcmdb.wait(lambda: board(instance, "c1").last_error != "")
            st = board(instance, "c1")
            assert st.last_error_code == 1640001, st
            api = f"http://127.0.0.1:{instance.http.bound[0]}"
            assert (await http.get(f"{api}/readyz")).status_code == 200
            status = (await http.get(f"{api}/status")).text
            metrics = (await http.get(
                f"http://127.0.0.1:{instance.http.bound[-1]}/metrics")).text
            assert '"last_error_code": 1640001' in status
            assert 'status="auth"' in metrics
    for text in (status, metrics, caplog.text, repr(settings), str(settings.model_dump())):
        assert wrong not in text and SECRET not in text
