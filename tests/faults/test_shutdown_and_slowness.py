"""TEST-MATRIX rows 31 and 32: a graceful stop (SIGTERM) in the middle of the load, and a
CMDB that answers every statement half a second late.

Row 31: two instances on ZooKeeper and a private MariaDB. The leaving instance is made to
be inside a write transaction when the signal arrives (a held row lock blocks its batch;
the server confirms the wait), and the lock goes only once it has begun to shut down. At
its exit, nothing of it is left open on the server, its ZooKeeper member node is already
gone (it closed its session: its clusters move now, not a session timeout later) and it
holds no lease; the other instance takes every cluster over and the table converges.

Row 32: one instance reaching the shared server through a TCP proxy that delays every
chunk by a quarter of a second each way, so each statement takes half a second, while one
cluster changes fifty times a second. The queues fill to at most one record per pod
(back-pressure instead of memory), the lag gauge rises, changes coalesce (fewer rows
written than changes received), and everything recovers once the latency goes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from dbfaults import CACHE_IDLE, RowLock, transactions, wait_for_transaction
from faults_support import (
    CLUSTERS,
    RSS_SLACK,
    MySqlProxies,
    Peaks,
    keys_ever,
    total,
    until_metrics,
)
from scaleout_oracles import Observer, converge, lease_rows, now
from scaleout_support import Fleet, SimProcess, share
from zkserver import ZkServer

LOAD = 50.0
"""Changes per second per cluster while the fault lasts."""
STATEMENT_LATENCY = 0.5
"""Seconds added to every statement's round trip (half each way)."""
SLOW_EVENTS = 500
"""Changes made to the slowed cluster: ten seconds at LOAD."""
LAG_SEEN = 1.0
"""Lag (seconds) the gauge must show while the CMDB is slow: two statement round trips;
a batch is at least five (BEGIN, fence check, upsert, counters, COMMIT)."""
WATCH_TYPES = ("ADDED", "MODIFIED", "DELETED")


async def test_row31_sigterm_under_load_releases_everything_and_loses_nothing(
    private_cmdb: str, fleets: Callable[..., Fleet], sim: SimProcess, zk_server: ZkServer,
) -> None:
    fleet = fleets(private_cmdb, zk=zk_server)
    await fleet.add(0, own_user=True)
    await fleet.settled()
    leaving = await fleet.add(1, own_user=True)
    docs = await fleet.settled()
    theirs = sorted(share(docs, "sync-1"))
    assert theirs, "the ring must give the leaving instance something"
    x, user = theirs[0], fleet.db_user(1)
    observer = await Observer(zk_server.hosts, fleet.zk_root).start()
    try:
        assert "sync-1" in await observer.member_sessions()
        await sim.churn_all(CLUSTERS, events=None, rate=LOAD, seed=31)
        async with RowLock(private_cmdb, x):
            await wait_for_transaction(private_cmdb, user, state="LOCK WAIT")
            mark = len(leaving.lines)
            leaving.signal(signal.SIGTERM)  # a batch of X is inside its transaction
            await leaving.wait_for_line("stopping", after=mark)
        code = await leaving.wait_exit()  # the batch went on once the lock went
        exited = now()
        members = await observer.member_sessions()
        leases = lease_rows(private_cmdb)
        await asyncio.sleep(2 * CACHE_IDLE)  # the server's transaction list is a snapshot
        left_open = await asyncio.to_thread(transactions, private_cmdb, user)

        assert code == 0, leaving.tail()
        assert "sync-1" not in members, "its session was left to expire, not closed"
        assert not [c for c in theirs if leases.get(c, ("",))[0] == "sync-1"], leases
        assert left_open == [], left_open
        docs = await fleet.settled(["sync-0"])
        took = now() - exited
        assert sorted(c["id"] for c in docs["sync-0"]["clusters"]) == CLUSTERS  # type: ignore[index]
        await sim.stop_churn(CLUSTERS)
        await converge(sim, private_cmdb, CLUSTERS)  # N, U, M
    finally:
        await observer.close()
    print(f"row 31: SIGTERM with a batch of {x} mid-transaction: exit 0, member node gone and"
          f" leases free at exit; sync-0 owned and synced {theirs} {took:.1f}s after")


async def test_row32_slow_cmdb_back_pressure_lag_and_coalescing(
    cmdb: str, mysql_proxies: MySqlProxies, fleets: Callable[..., Fleet], sim: SimProcess,
) -> None:
    proxy, through = await mysql_proxies.front(cmdb)
    fleet = fleets(cmdb)
    inst = await fleet.add(0, dsn=through)
    await fleet.settled()
    x = CLUSTERS[0]
    before, base_rss = await inst.metrics(), inst.rss()

    proxy.latency = STATEMENT_LATENCY / 2
    slowed = now()
    async with Peaks(inst) as peaks:
        await sim.churn(x, events=SLOW_EVENTS, rate=LOAD, seed=32)
        await until_metrics(inst, lambda s: None if total(
            s, "lag_seconds", cluster=x) > LAG_SEEN else f"{x}: lag below {LAG_SEEN}s")
        await sim.wait_churn([x])
    proxy.latency = 0.0
    took = await converge(sim, cmdb, CLUSTERS)
    after = await until_metrics(inst, lambda s: None if total(
        s, "lag_seconds", cluster=x) == 0 else f"{x}: lag {total(s, 'lag_seconds', cluster=x)}")

    events = sum(total(after, "events_total", cluster=x, type=t)
                 - total(before, "events_total", cluster=x, type=t) for t in WATCH_TYPES)
    written = (total(after, "writes_total", cluster=x, result="written")
               - total(before, "writes_total", cluster=x, result="written"))
    keys = await keys_ever(sim, x)
    assert events > 2 * keys, "the changes must outnumber the pods for the bounds to mean much"
    assert written < events, f"{written} rows written for {events} changes: no coalescing"
    assert 0 < peaks.depth.get(x, 0) <= keys, (peaks.depth, keys)
    assert peaks.rss - base_rss < RSS_SLACK, (base_rss, peaks.rss)
    print(f"row 32: {STATEMENT_LATENCY}s per statement for {now() - slowed - took:.1f}s:"
          f" peak lag {peaks.lag.get(x, 0):.1f}s, peak queue {peaks.depth.get(x, 0):.0f}"
          f" (<= {keys} pods ever), {written:.0f} rows written for {events:.0f} changes;"
          f" RSS {base_rss / 2**20:.0f} -> peak {peaks.rss / 2**20:.0f} MiB; lag back to 0")
