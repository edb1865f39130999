"""TEST-MATRIX rows for one instance, end to end: simulated API server over HTTP,
`KubeSource`, `ClusterReconciler`, real MariaDB (with an audit trigger for M)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from reconciler import ReconcilerSettings
from synchronizer.simulator import churn

from .harness import TIMEOUT, Harness, admin, audit_count


async def test_initial_sync_then_events_converge(harness: Harness) -> None:
    await harness.start()
    await harness.assert_converged()
    ns, name = harness.pod(0)["metadata"]["namespace"], harness.pod(0)["metadata"]["name"]
    harness.cluster.delete(ns, name)
    await churn(harness.cluster, events=200, rate=None, rng=harness.rng)
    await harness.settle()
    await harness.assert_converged()
    assert harness.rec is not None and harness.rec.status.full_syncs == 1


async def test_row1_stream_cut_resumes_from_last_version_without_relist(harness: Harness) -> None:
    rec = await harness.start()
    for _ in range(3):
        await churn(harness.cluster, events=50, rate=None, rng=harness.rng)
        harness.cluster.drop_streams(reset=True)
    await churn(harness.cluster, events=20, rate=None, rng=harness.rng)
    await harness.settle()
    await harness.assert_converged()
    assert rec.status.full_syncs == 1
    assert harness.sample("bkcmdb_sync_watch_restarts_total",
                          {"cluster": "c1", "reason": "expired"}) == 0


async def test_row2_410_relists_and_tombstones_deletes_made_in_the_gap(harness: Harness) -> None:
    rec = await harness.start()
    harness.cluster.stall_streams(True)
    gone = [harness.pod(i)["metadata"] for i in range(5)]
    for meta in gone:
        harness.cluster.delete(meta["namespace"], meta["name"])
    await churn(harness.cluster, events=50, rate=None, rng=harness.rng)
    harness.cluster.compact()
    harness.cluster.stall_streams(False)
    harness.cluster.drop_streams()
    await harness.settle()
    await harness.assert_converged()
    rows = {r["uid"]: r for r in await harness.rows()}
    for meta in gone:
        assert rows[meta["uid"]]["state"] == "Deleted"
    assert rec.status.full_syncs == 2
    assert harness.sample("bkcmdb_sync_watch_restarts_total",
                          {"cluster": "c1", "reason": "expired"}) == 1


async def test_row3_expired_continue_token_deletes_nothing_and_restarts_the_list(
    harness: Harness,
) -> None:
    rec = await harness.start()
    harness.cluster.fail_next(410, on="list", after_pages=1)
    before = {r["uid"] for r in await harness.rows() if r["state"] == "Active"}
    rec.request_full_sync("test")
    async with asyncio.timeout(TIMEOUT):
        await rec.wait_synced(1)
    after = {r["uid"] for r in await harness.rows() if r["state"] == "Active"}
    assert before == after
    assert harness.sample("bkcmdb_sync_full_syncs_total",
                          {"cluster": "c1", "trigger": "test", "result": "error"}) == 1
    await harness.assert_converged()


async def test_row4_quiet_period_with_bookmarks_only_never_relists(harness: Harness) -> None:
    rec = await harness.start()
    first = harness.cluster.resource_version
    # unrelated progress of the cluster's revision is what bookmarks report; simulate it
    # by changing pods in another cluster? No: versions are per cluster. Make changes, then
    # a long quiet period in which history is compacted repeatedly.
    await churn(harness.cluster, events=10, rate=None, rng=harness.rng)
    await harness.settle()
    for _ in range(3):
        harness.cluster.compact()
        async with asyncio.timeout(TIMEOUT):
            await harness.cluster.wait_delivered()  # a bookmark at the newest version
        harness.cluster.drop_streams()
        async with asyncio.timeout(TIMEOUT):
            await harness.cluster.wait_watchers(1)
    await harness.settle()
    assert rec.status.resume_version is not None and rec.status.resume_version > first
    assert rec.status.full_syncs == 1
    assert harness.sample("bkcmdb_sync_watch_restarts_total",
                          {"cluster": "c1", "reason": "expired"}) == 0
    await harness.assert_converged()


async def test_row5_apiserver_restart_reconnects_without_a_full_sync_storm(
    harness: Harness,
) -> None:
    rec = await harness.start()
    port = harness.sim.port
    await harness.sim.stop()
    await harness.sim.start(port=port)
    await churn(harness.cluster, events=100, rate=None, rng=harness.rng)
    await harness.settle()
    await harness.assert_converged()
    assert rec.status.full_syncs == 1


async def test_row7_429_with_retry_after_is_honoured(harness: Harness) -> None:
    rec = await harness.start()
    harness.cluster.fail_next(429, count=None, retry_after=1, on="watch")
    harness.cluster.drop_streams()
    watches = harness.cluster.requests["watch"]
    await asyncio.sleep(2.5)  # a window to count requests in, not a synchronisation
    attempts = harness.cluster.requests["watch"] - watches
    assert 1 <= attempts <= 4, f"{attempts} watch attempts in 2.5 s with Retry-After: 1"
    harness.cluster.clear_failures()
    await churn(harness.cluster, events=20, rate=None, rng=harness.rng)
    await harness.settle()
    await harness.assert_converged()
    assert "watch" in (rec.status.last_error or "")


async def test_row9_malformed_lines_are_skipped_and_the_stream_continues(
    harness: Harness,
) -> None:
    await harness.start()
    async with asyncio.timeout(TIMEOUT):
        await harness.cluster.wait_watchers(1)
    no_uid = orjson.loads(orjson.dumps(harness.pod(1)))
    del no_uid["metadata"]["uid"]
    huge = orjson.loads(orjson.dumps(harness.pod(2)))
    huge["metadata"]["annotations"]["blob"] = "x" * 1_000_000
    for line in [
        b"{this is not json",
        b'{"type":"SURPRISE","object":{}}',
        b'{"type":"","object":{}}',
        orjson.dumps({"type": "MODIFIED", "object": no_uid}),
        orjson.dumps({"type": "MODIFIED", "object": {"metadata": {"uid": 5, "namespace": []}}}),
        orjson.dumps({"type": "MODIFIED", "object": huge}),
    ]:
        harness.cluster.inject_raw(line)
    await churn(harness.cluster, events=30, rate=None, rng=harness.rng)
    await harness.settle()
    await harness.assert_converged()
    skipped = sum(
        harness.sample("bkcmdb_sync_skipped_objects_total", {"cluster": "c1", "reason": r})
        for r in ("bad_json", "bad_object", "bad_line", "unknown_type", "invalid"))
    unknown = harness.sample("bkcmdb_sync_events_total", {"cluster": "c1", "type": "UNKNOWN"})
    assert skipped + unknown >= 4


async def test_row10_delete_and_recreate_same_name_gives_two_rows(harness: Harness) -> None:
    await harness.start()
    pod = orjson.loads(orjson.dumps(harness.pod(3)))
    meta = pod["metadata"]
    old_uid = meta["uid"]
    harness.cluster.delete(meta["namespace"], meta["name"])
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        meta.pop(key, None)
    harness.cluster.create(pod)
    await harness.settle()
    await harness.assert_converged()
    rows = [r for r in await harness.rows() if r["name"] == meta["name"]]
    assert sorted(r["state"] for r in rows) == ["Active", "Deleted"]
    assert next(r for r in rows if r["state"] == "Deleted")["uid"] == old_uid


async def test_row11_delete_while_disconnected_is_tombstoned_after_relist(
    harness: Harness,
) -> None:
    await harness.start()
    meta = harness.pod(4)["metadata"]
    harness.cluster.fail_next(503, count=None, on="watch")
    harness.cluster.drop_streams()
    harness.cluster.delete(meta["namespace"], meta["name"])
    harness.cluster.compact()
    harness.cluster.clear_failures()
    await harness.settle()
    rows = {r["uid"]: r for r in await harness.rows()}
    assert rows[meta["uid"]]["state"] == "Deleted"
    await harness.assert_converged()


async def test_row12_event_burst_during_full_sync_overflows_gate_and_converges(
    harness: Harness,
) -> None:
    harness.settings = ReconcilerSettings(senders=4, batch_size=50, linger=0.005,
                                          gate_capacity=20, backoff_initial=0.05,
                                          backoff_max=0.5, full_sync_interval=3600)
    rec = await harness.start()
    harness.cluster.page_delay = 0.05
    rec.request_full_sync("test")
    await churn(harness.cluster, events=500, rate=None, rng=harness.rng)
    harness.cluster.page_delay = 0.0
    await harness.settle()
    async with asyncio.timeout(TIMEOUT):
        while harness.sample("bkcmdb_sync_gate_overflows_total", {"cluster": "c1"}) >= 1 \
                and rec.status.full_syncs < 3:
            await rec.wait_synced(rec.status.full_syncs)
    await harness.settle()
    await harness.assert_converged()
    assert harness.sample("bkcmdb_sync_gate_overflows_total", {"cluster": "c1"}) >= 1


async def test_row13_duplicate_delivery_changes_no_row(harness: Harness) -> None:
    await harness.start()
    await churn(harness.cluster, events=40, rate=None, rng=harness.rng)
    await harness.settle()
    changes = audit_count(harness.dsn)
    harness.cluster.replay(40)
    harness.cluster.drop_streams()  # and a reconnect
    rec = harness.rec
    assert rec is not None
    rec.request_full_sync("test")  # and a relist re-sending everything
    async with asyncio.timeout(TIMEOUT):
        await rec.wait_synced(1)
    await harness.settle()
    assert audit_count(harness.dsn) == changes
    await harness.assert_converged()


async def test_row14_killed_database_connections_are_retried(harness: Harness) -> None:
    await harness.start()
    conn = admin(harness.dsn)
    task = asyncio.create_task(churn(harness.cluster, events=400, rate=2000, rng=harness.rng))
    for _ in range(3):
        await asyncio.sleep(0.05)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = DATABASE()"
                        " AND id <> CONNECTION_ID()")
            for (pid,) in cur.fetchall():
                try:
                    cur.execute(f"KILL CONNECTION {int(pid)}")
                except Exception:  # already gone
                    pass
    await task
    conn.close()
    await harness.settle()
    await harness.assert_converged()


async def test_row30_out_of_band_edits_are_repaired_by_the_next_full_sync(
    harness: Harness,
) -> None:
    rec = await harness.start()
    uids = [harness.pod(i)["metadata"]["uid"] for i in range(3)]
    conn = admin(harness.dsn)
    with conn.cursor() as cur:
        cur.execute("UPDATE pods SET set_name = 'tampered', checksum = 'x' WHERE uid = %s",
                    (uids[0],))
        cur.execute("DELETE FROM pods WHERE uid = %s", (uids[1],))
        cur.execute("UPDATE pods SET state = 'Deleted' WHERE uid = %s", (uids[2],))
    conn.close()
    rec.request_full_sync("test")
    async with asyncio.timeout(TIMEOUT):
        await rec.wait_synced(1)
    await harness.settle()
    await harness.assert_converged()


async def test_full_sync_during_churn_is_never_overtaken_by_older_list_data(
    harness: Harness,
) -> None:
    rec = await harness.start()
    harness.cluster.page_delay = 0.01
    task = asyncio.create_task(churn(harness.cluster, events=600, rate=1500, rng=harness.rng))
    for n in range(1, 4):
        rec.request_full_sync("test")
        async with asyncio.timeout(TIMEOUT):
            await rec.wait_synced(n)
    await task
    harness.cluster.page_delay = 0.0
    await harness.settle()
    await harness.assert_converged()  # includes: no stored version ever went backwards


@pytest.mark.parametrize("text", [
    "ünïcödé-名前-🚀", "quote'\"`", "'; DROP TABLE pods; --", "back\\slash", "%s %(x)s",
])
async def test_bad_input_characters_are_stored_verbatim(harness: Harness, text: str) -> None:
    await harness.start()
    meta = harness.pod(5)["metadata"]

    def edit(pod: dict) -> None:
        pod["metadata"].setdefault("labels", {})["weird"] = text
        pod["metadata"].setdefault("annotations", {}).update({
            "set.bkcmdb.bkbcs.tencent.com": text, "module.bkcmdb.bkbcs.tencent.com": text,
            "big": "y" * 100_000})

    harness.cluster.update(meta["namespace"], meta["name"], edit)
    await harness.settle()
    await harness.assert_converged()
    row = next(r for r in await harness.rows() if r["uid"] == meta["uid"])
    assert row["set_name"] == text and row["module_name"] == text
    assert orjson.loads(row["labels"])["weird"] == text


async def test_stalled_stream_is_restarted_after_the_inactivity_bound(harness: Harness) -> None:
    rec = await harness.start(inactivity=0.5)
    async with asyncio.timeout(TIMEOUT):
        await harness.cluster.wait_watchers(1)
    harness.cluster.stall_streams(True)
    await churn(harness.cluster, events=30, rate=None, rng=harness.rng)
    async with asyncio.timeout(TIMEOUT):
        while harness.sample("bkcmdb_sync_watch_restarts_total",
                             {"cluster": "c1", "reason": "stalled"}) < 1:
            await harness.cluster.wait_until(lambda: harness.cluster.watchers == 0)
            await harness.cluster.wait_watchers(1)
    harness.cluster.stall_streams(False)
    await harness.settle()
    await harness.assert_converged()
    assert rec.status.full_syncs == 1
