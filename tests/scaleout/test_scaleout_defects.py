"""Regression tests for product defects the scale-out suite found, one test each.

Each `DEFECT_*` text says what was wrong and why; the tests failed (as strict xfails)
until the fixes landed: a reconciler waiting for its lease now honours `stop()`
(`reconciler/_cluster.py`), a fenced write is reported as `Fenced` through nested task
groups, `forget()` keeps counters (`synchronizer/metrics.py`), and MariaDB ends a
transaction left idle by a frozen owner (`synchronizer/cmdb/mysql.py`).

How the faults are made deterministic: a lease row written straight into the store
(`steal_lease`) is exactly what a new owner's takeover leaves there (another owner, an
epoch not lower than ours), without depending on which of two processes wins a race. An
owner frozen inside a write transaction is made the same way: a held row lock stops its
write at a known statement, the server confirms it is waiting there, and only then is it
SIGSTOPped (`pause_inside_write`; on a private MariaDB, whose transaction list no other
test reads).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from scaleout_oracles import converge, lease_rows, now, steal_lease
from scaleout_support import (
    EXPIRY_SLACK,
    Fleet,
    metric_sum,
    owners,
    pause_inside_write,
    share,
)
from zkserver import ZkServer

from synchronizer.coordination import assign

DEFECT_STOP_WHILE_WAITING_FOR_LEASE = (
    "reconciler/_cluster.py ClusterReconciler._acquire_lease loops until the lease is "
    "acquired and never looks at self._stop; run() only awaits _stop inside the TaskGroup "
    "entered afterwards. A reconciler whose lease another owner holds ignores stop(): the "
    "controller waits stop_timeout (15 s) and cancels it, and Instance.run closes the "
    "ZooKeeper session only after that, so every cluster of a SIGTERMed instance is handed "
    "over 15 s late (and Controller.converge stalls the same way on a rebalance)"
)
DEFECT_WRITE_FENCE_REPORTED_AS_FAILURE = (
    "reconciler/_sender.py SenderPool.run runs the senders in its own TaskGroup, so a "
    "Fenced write leaves it as ExceptionGroup([Fenced]); ClusterReconciler.run re-raises "
    "group.subgroup(Fenced).exceptions[0], i.e. that inner group, so the controller's "
    "`except Fenced` misses it: logged at ERROR as 'reconciler failed: ExceptionGroup: "
    "unhandled errors in a TaskGroup', /status last_error says the same"
)
DEFECT_FENCE_METRIC_FORGOTTEN = (
    "synchronizer/controller.py Controller._stop calls metrics.forget(cluster), and "
    "PrometheusMetrics.forget removes every series with that cluster label, counters "
    "included: bkcmdb_sync_fenced_writes_total vanishes from /metrics the moment a fenced "
    "instance stands down, which is what docs/operations.md tells operators to look for"
)


def ring_share(member: str, members: list[str], clusters: list[str]) -> list[str]:
    """The clusters the plain ring gives `member`."""
    return sorted(c for c, o in assign(clusters, members).items() if o == member)


async def test_sigterm_hands_over_fast_even_with_a_reconciler_waiting_for_its_lease(
    fleet_factory: Callable[..., Fleet], zk_server: ZkServer,
) -> None:
    fleet = fleet_factory(zk_server, session_timeout=5.0)
    await fleet.start_three()
    x = ring_share("sync-1", ["sync-0", "sync-1", "sync-2"], fleet.clusters)[0]
    _, epoch = lease_rows(fleet.dsn)[x]
    leaving = fleet.instances["sync-1"]
    # another owner takes X over (same epoch, so the next owner's fresh epoch still wins);
    # sync-1's next write of X is fenced and its reconciler restarts, waiting for the lease
    steal_lease(fleet.dsn, x, owner="elsewhere", epoch=epoch, seconds=3600)
    await fleet.sim.churn(x, events=20, rate=None, seed=1)
    await fleet.until(lambda d: None if any(
        c["id"] == x and c["state"] == "waiting-lease" for c in d["sync-1"]["clusters"])  # type: ignore[index]
        else f"{x} not waiting for its lease yet", instances=[leaving])

    sent = now()
    leaving.signal(signal.SIGTERM)
    try:
        code = await leaving.wait_exit(timeout=fleet.session_timeout)
    except TimeoutError:
        await leaving.kill()  # do not make the teardown wait out the 15 s as well
        raise AssertionError(f"SIGTERM not done within S = {fleet.session_timeout}s:\n"
                             + leaving.tail()) from None
    assert code == 0
    # the survivors own everything; X once the new owner's higher epoch takes it over
    await fleet.settled(["sync-0", "sync-2"], timeout=fleet.session_timeout)
    assert now() - sent < fleet.session_timeout


async def test_a_fenced_write_is_reported_as_fenced(
    fleet_factory: Callable[..., Fleet], zk_server: ZkServer,
) -> None:
    # the lease keeper renews every lease_ttl / 3 = 100 s: the write meets the fence first
    fleet = fleet_factory(zk_server, lease_ttl=300.0)
    inst = await fleet.add(0)
    await fleet.settled()
    x = fleet.clusters[0]
    _, epoch = lease_rows(fleet.dsn)[x]
    mark = len(inst.lines)
    # a short takeover: the reconciler gets its lease back after it (no 15 s stall)
    steal_lease(fleet.dsn, x, owner="elsewhere", epoch=epoch, seconds=2)
    await fleet.sim.churn(x, events=20, rate=None, seed=2)
    _, _, line = await inst.wait_for_line(f"cluster {x}: fenced (", f"cluster {x}: reconciler",
                                          after=mark)
    samples = await inst.metrics()
    assert samples[f'bkcmdb_sync_fenced_writes_total{{cluster="{x}",kind="pods"}}'] >= 1
    assert f"cluster {x}: fenced (cluster {x}: lease held by elsewhere" in line, line


async def test_fenced_writes_stay_visible_after_the_fenced_instance_stands_down(
    fleet_factory: Callable[..., Fleet], zk_server: ZkServer,
) -> None:
    fleet = fleet_factory(zk_server, lease_ttl=300.0)
    first = await fleet.add(0)
    await fleet.settled()
    # X: a cluster the ring will hand to sync-1 when it joins
    x = ring_share("sync-1", ["sync-0", "sync-1"], fleet.clusters)[0]
    _, epoch = lease_rows(fleet.dsn)[x]
    steal_lease(fleet.dsn, x, owner="elsewhere", epoch=epoch, seconds=2)
    await fleet.sim.churn(x, events=20, rate=None, seed=3)
    series = f'bkcmdb_sync_fenced_writes_total{{cluster="{x}",kind="pods"}}'
    # fenced; then (the short takeover over) its restarted reconciler owns X again
    await fleet.until(lambda d: None if any(
        c["id"] == x and c["restarts"] >= 1 and c["state"] == "watching"
        for c in d["sync-0"]["clusters"])  # type: ignore[index]
        else f"{x} not fenced and back yet", instances=[first])
    assert (await first.metrics()).get(series, 0) >= 1  # visible while it owns X
    # now X moves away, as a zombie's clusters do: sync-0 stands down from it
    await fleet.add(1)
    docs = await fleet.settled()
    assert owners(docs)[x] == ["sync-1"]
    await converge(fleet.sim, fleet.dsn, fleet.clusters)
    samples = await first.metrics()
    assert samples.get(series, 0) >= 1, (
        f"{series} gone from sync-0's /metrics (total now "
        f"{metric_sum(samples, 'bkcmdb_sync_fenced_writes_total')})")


DEFECT_PAUSED_TRANSACTION_BLOCKS_TAKEOVER = (
    "synchronizer/cmdb/mysql.py: every fenced write holds a shared lock on its cluster's "
    "lease row until COMMIT (_check_fence, LOCK IN SHARE MODE) and acquire() needs an "
    "exclusive one; an owner paused (GC, SIGSTOP, VM freeze) inside a write transaction "
    "keeps its connection and so the lock, and the server never times it out "
    "(idle_transaction_timeout 0, wait_timeout 8 h): the new owner's acquire() waits "
    "(innodb_lock_wait_timeout 50 s, then again) for as long as the zombie stays paused"
)


async def test_owner_paused_inside_a_write_transaction_is_still_taken_over(
    private_cmdb: str, fleet_factory: Callable[..., Fleet], zk_server: ZkServer,
) -> None:
    # private_cmdb first: set up before the fleet, so torn down after it
    fleet = fleet_factory(zk_server, dsn=private_cmdb)
    docs = await fleet.start_three(own_users=True)
    zombie = fleet.instances["sync-1"]
    x = sorted(share(docs, "sync-1"))[0]
    held = await pause_inside_write(zombie, fleet.sim, fleet.dsn, fleet.db_user(1), x)
    try:
        # it sits inside a write transaction, holding its lease row's lock; the server
        # says so (the transaction is open and holds row locks)
        assert held and all(t.rows_locked > 0 for t in held)
        # the others take every cluster over within S + a few seconds, as after a clean
        # pause (test_row18_zombie_is_fenced_or_stands_down_then_rejoins)
        await fleet.settled(["sync-0", "sync-2"],
                            timeout=fleet.session_timeout + EXPIRY_SLACK)
    finally:
        await zombie.kill()  # resumed, it would be slow to stop (the defect above)
