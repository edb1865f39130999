"""TEST-MATRIX rows 26 and 27: a write transaction whose outcome the instance cannot know
(the connection is lost after COMMIT was sent), and one that cannot get its locks in time
(lock-wait timeout).

Row 26 goes through a TCP proxy in front of the shared server that understands just
enough of the MySQL protocol (`dbfaults.CommitAfterWrite`) to let the COMMIT of a batch
through, wait for the server's answer -- so the commit has happened -- and then drop that
answer and reset the connection. The instance sees a lost connection, retries the batch,
and every row of it is already at that version: the retry must change nothing.

Row 27 runs on a private server whose `innodb_lock_wait_timeout` is 1 s for every new
session (set globally before the instance connects). An admin session holds every row of
one cluster (`dbfaults.RowLock`), so each write of that cluster times out after a second
(MySQL error 1205) until the lock goes: retried with backoff, nothing dead-lettered,
counted, and the other clusters unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dbfaults import CommitAfterWrite, RowLock
from faults_support import CLUSTERS, MySqlProxies, total, until_metrics
from integration.harness import admin
from mariadbserver import MariaDbServer
from scaleout_oracles import GUARD, converge
from scaleout_support import Fleet, SimProcess

LOCK_WAIT_TIMEOUT = 1
"""Seconds a session of the private server waits for a row lock (MariaDB's minimum)."""
TIMEOUTS = 3
"""Lock-wait timeouts of the locked cluster to see before the lock goes."""


async def test_row26_a_commit_whose_answer_is_lost_is_retried_as_a_no_op(
    cmdb: str, mysql_proxies: MySqlProxies, fleets: Callable[..., Fleet], sim: SimProcess,
) -> None:
    proxy, through = await mysql_proxies.front(cmdb)
    fleet = fleets(cmdb)
    inst = await fleet.add(0, dsn=through)
    await fleet.settled()
    x = CLUSTERS[0]
    before = await inst.metrics()

    cut = proxy.cut_reply(CommitAfterWrite)
    await sim.churn(x, events=40, rate=None, seed=26)
    async with asyncio.timeout(GUARD):
        await cut.wait()  # a batch of X committed; its answer lost with the connection
    await sim.wait_churn([x])
    # the retry: the instance saw the batch fail and wrote it again
    after = await until_metrics(inst, lambda s: None if total(
        s, "writes_total", cluster=x, result="unchanged") > total(
        before, "writes_total", cluster=x, result="unchanged") else "no retry yet")
    await converge(sim, cmdb, CLUSTERS)  # U, M; and nothing lost

    def delta(name: str, **labels: str) -> float:
        return total(after, name, cluster=x, **labels) - total(before, name, cluster=x,
                                                                **labels)

    # exactly one failed attempt (the cut), and its retry wrote no row: every row of the
    # batch was already at its version, so the conditional upsert changed nothing
    assert proxy.cut == 1
    assert delta("batches_total", result="transient") == 1
    unchanged = delta("writes_total", result="unchanged")
    assert unchanged >= 1
    assert delta("writes_total", result="rejected") == 0
    print(f"row 26: COMMIT answered, answer cut: the retry found {unchanged:.0f} rows already"
          f" written and changed none; {delta('writes_total', result='written'):.0f} rows"
          f" written in all for the 40 changes")


def set_global(server: MariaDbServer, name: str, value: int) -> None:
    """`SET GLOBAL name = value` on the private server (new sessions take it)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET GLOBAL {name} = {int(value)}")
    finally:
        conn.close()


def dead_letters(dsn: str) -> int:
    """Rows in the dead-letter table."""
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM dead_letters")
            (n,) = cur.fetchone()
            return int(n)
    finally:
        conn.close()


async def test_row27_lock_wait_timeouts_are_retried_and_poison_nothing(
    private_mariadb: MariaDbServer, private_cmdb: str, fleets: Callable[..., Fleet],
    sim: SimProcess,
) -> None:
    await asyncio.to_thread(set_global, private_mariadb, "innodb_lock_wait_timeout",
                            LOCK_WAIT_TIMEOUT)
    fleet = fleets(private_cmdb)
    inst = await fleet.add(0, own_user=True)
    await fleet.settled()
    x, others = CLUSTERS[0], CLUSTERS[1:]
    mark = len(inst.lines)

    async with RowLock(private_cmdb, x):
        await sim.churn_all(CLUSTERS, events=60, rate=None, seed=27)
        await until_metrics(inst, lambda s: None if total(
            s, "batches_total", cluster=x, result="transient") >= TIMEOUTS
            else f"{x}: fewer than {TIMEOUTS} timed-out batches")
        await converge(sim, private_cmdb, others)  # the others write on meanwhile
    took = await converge(sim, private_cmdb, CLUSTERS)  # X catches up once the lock goes

    samples = await inst.metrics()
    timeouts = [line for _, _, line in inst.find("1205", mark)]
    assert timeouts and all(f"cluster {x}" in line for line in timeouts), inst.tail()
    assert total(samples, "writes_total", result="rejected") == 0  # no poison
    assert await asyncio.to_thread(dead_letters, private_cmdb) == 0
    for cluster in others:
        assert total(samples, "batches_total", cluster=cluster, result="transient") == 0
    docs = await fleet.statuses()
    assert all(c["restarts"] == 0 for c in docs["sync-0"]["clusters"])  # type: ignore[index]
    print(f"row 27: {total(samples, 'batches_total', cluster=x, result='transient'):.0f}"
          f" lock-wait timeouts of {x} retried, none dead-lettered; caught up {took:.1f}s"
          f" after the lock went")
