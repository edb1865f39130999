"""TEST-MATRIX rows 25 and 29: the CMDB server goes away under load (a crash and a
restart, in the middle of a batch) or stops taking writes for a while (read-only).

Both on a MariaDB server of the test's own (tests/mariadbserver.py): the shared server is
never restarted or reconfigured. The instance reaches it as a user of its own without
global privileges, so `read_only` applies to it and its sessions can be told apart.

"Mid-batch" is made, not hoped for: an admin session locks every row of one cluster
(`dbfaults.RowLock`), so that cluster's next write transaction blocks at its upsert; once
the server shows it waiting (`LOCK WAIT`), the server is killed. The batch was inside its
transaction, so crash recovery rolls it back and the instance must write it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dbfaults import RowLock, wait_for_transaction
from faults_support import (
    CLUSTERS,
    RSS_SLACK,
    Peaks,
    keys_ever,
    readyz,
    total,
    until_metrics,
)
from mariadbserver import MariaDbServer
from scaleout_oracles import converge, now
from scaleout_support import POLL, Fleet, SimProcess

LOAD = 50.0
"""Changes per second per cluster while the fault lasts."""
OUTAGE_EVENTS = 600
"""Changes per cluster made while the CMDB is read-only: at LOAD, a twelve-second outage
("minutes", compressed), and several times more changes than distinct pods."""


def set_read_only(server: MariaDbServer, on: bool) -> None:
    """`SET GLOBAL read_only` on the private server."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET GLOBAL read_only = {'ON' if on else 'OFF'}")
    finally:
        conn.close()


async def test_row25_mariadb_restart_mid_batch_loses_nothing(
    private_mariadb: MariaDbServer, private_cmdb: str, fleets: Callable[..., Fleet],
    sim: SimProcess,
) -> None:
    fleet = fleets(private_cmdb)
    inst = await fleet.add(0, own_user=True)
    await fleet.settled()
    pid, x = inst.pid, CLUSTERS[0]
    await sim.churn_all(CLUSTERS, events=None, rate=LOAD, seed=25)

    async with RowLock(private_cmdb, x):  # (its session dies with the server)
        held = await wait_for_transaction(private_cmdb, fleet.db_user(0), state="LOCK WAIT")
        # X changes no more: its rows can reach the truth only if the batch in flight
        # (and what queued behind it) is written after the crash, never superseded
        await sim.stop_churn([x])
        before = await inst.metrics()  # (no batch of X can commit while the lock holds)
        await asyncio.to_thread(private_mariadb.kill)  # a crash, a batch of X in flight
    await asyncio.to_thread(private_mariadb.start)  # same data: crash recovery
    crashed = now()
    # the load goes on; the instance writes again (every cluster commits a batch; X's
    # is the one that was in flight, retried)
    await until_metrics(inst, lambda s: next(
        (f"{c}: no batch committed since the crash" for c in CLUSTERS
         if total(s, "batches_total", cluster=c, result="ok")
         <= total(before, "batches_total", cluster=c, result="ok")), None))
    await sim.stop_churn(CLUSTERS)
    took = await converge(sim, private_cmdb, CLUSTERS)  # N, U, M; C(T)

    samples = await inst.metrics()
    retried = total(samples, "batches_total", cluster=x, result="transient")
    assert retried >= 1, "the batch in flight was never retried"
    assert total(samples, "writes_total", result="rejected") == 0
    assert inst.alive and inst.pid == pid  # reconnected, not restarted
    print(f"row 25: killed mariadbd with {len(held)} write transaction(s) of {x} in flight;"
          f" {retried:.0f} transient batches of {x} retried; table = truth"
          f" {took:.1f}s after the churn stopped ({now() - crashed:.1f}s after the crash)")


async def test_row29_read_only_cmdb_is_reported_bounded_and_caught_up(
    private_mariadb: MariaDbServer, private_cmdb: str, fleets: Callable[..., Fleet],
    sim: SimProcess,
) -> None:
    fleet = fleets(private_cmdb)
    inst = await fleet.add(0, own_user=True)
    await fleet.settled()
    mark, base_rss = len(inst.lines), inst.rss()

    await asyncio.to_thread(set_read_only, private_mariadb, True)
    began = now()
    unready: tuple[int, str] | None = None
    async with Peaks(inst) as peaks:
        await sim.churn_all(CLUSTERS, events=OUTAGE_EVENTS, rate=LOAD, seed=29)
        churning = asyncio.create_task(sim.wait_churn(CLUSTERS))
        while not churning.done():  # watch /readyz for as long as the outage lasts
            code, text = await readyz(inst)
            if code != 200 and unready is None:
                unready = (code, text)
            await asyncio.sleep(POLL)  # another process's state: a bounded poll
        await churning
        await until_metrics(inst, lambda s: next(
            (f"{c}: no refused batch yet" for c in CLUSTERS
             if not total(s, "batches_total", cluster=c, result="transient")), None))
    outage = now() - began
    await asyncio.to_thread(set_read_only, private_mariadb, False)
    took = await converge(sim, private_cmdb, CLUSTERS)  # catch-up: N, U, M; C(T)
    await until_metrics(inst, lambda s: next(
        (f"{c}: lag {total(s, 'lag_seconds', cluster=c)}" for c in CLUSTERS
         if total(s, "lag_seconds", cluster=c) != 0), None))

    # E: the refusal is counted per cluster (above) and logged with the server's words
    assert any("read-only" in line or "1290" in line for _, _, line in inst.find("", mark))
    # B: the queues held at most one record per pod, never one per change
    for cluster in CLUSTERS:
        keys, done = await keys_ever(sim, cluster), OUTAGE_EVENTS
        assert done > 2 * keys, "the churn must outnumber the pods for the bound to mean much"
        assert 0 < peaks.depth.get(cluster, 0) <= keys, (cluster, peaks.depth, keys)
    assert peaks.rss - base_rss < RSS_SLACK, (base_rss, peaks.rss)
    assert (await readyz(inst))[0] == 200
    print(f"row 29: read-only for {outage:.1f}s: peak queue depth {peaks.depth}, RSS"
          f" {base_rss / 2**20:.0f} -> peak {peaks.rss / 2**20:.0f} MiB; caught up in"
          f" {took:.1f}s; /readyz during the outage: {unready or 'always 200'}")
    # E, last (so that everything above is checked too): /readyz said why, in the outage
    assert unready is not None, "/readyz stayed 200 while every write was refused"
    assert unready[0] == 503 and "read-only" in unready[1].lower(), unready
