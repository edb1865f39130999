"""TEST-MATRIX rows 17-22 with real instances: SIGKILL, a zombie (SIGSTOP/SIGCONT),
partitions and blips of the ZooKeeper connection (a TCP proxy in front of ZooKeeper for
one instance), a ZooKeeper restart, and membership churn.

Oracles, after the changes stop: the table equals the simulator's truth for every
cluster (C, N), no duplicate keys (U), stored versions never went back in the audit
trigger's history (M); and the lease table names the owners that /status names.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from scaleout_oracles import Observer, converge, dumps, epochs_only_grow, lease_rows, now
from scaleout_support import (
    CLUSTERS,
    EXPIRY_SLACK,
    POLL,
    Fleet,
    Statuses,
    cluster_field,
    masters,
    owners,
    pause_between_writes,
    share,
)
from tcpproxy import TcpProxy
from zkserver import ZkServer

from synchronizer.coordination import assign

Proxies = Callable[[ZkServer], Awaitable[TcpProxy]]


def leases_follow_status(dsn: str, docs: Statuses) -> None:
    """Every running cluster's lease row is (its instance, the epoch it runs with)."""
    leases = lease_rows(dsn)
    for name, doc in docs.items():
        assert doc is not None
        for c in doc["clusters"]:
            assert leases.get(c["id"]) == (name, c["epoch"]), (c["id"], leases.get(c["id"]))


FENCE_NEEDLES = (": fenced (", "reconciler failed")
"""How an instance logs a reconciler ended by `Fenced`: from the lease keeper as
"cluster X: fenced (...)"; from a refused write, today, as "cluster X: reconciler failed:
ExceptionGroup ..." (see test_scaleout_defects.py). Nothing else fails a reconciler here."""


def fence_lines(fleet: Fleet, name: str, after: int = 0) -> list[str]:
    """The instance's log lines saying a reconciler was fenced (or failed)."""
    inst = fleet.instances[name]
    return [line for needle in FENCE_NEEDLES for _, _, line in inst.find(needle, after)]


async def test_row17_sigkill_the_owner_of_a_cluster_under_load(three: Fleet) -> None:
    sim, dsn, S = three.sim, three.dsn, three.session_timeout
    docs = await three.statuses()
    head = masters(docs)[0]
    victim = next(n for n in sorted(docs) if n != head)
    x = sorted(share(docs, victim))[0]
    old_epoch = lease_rows(dsn)[x][1]
    await sim.churn_all([c for c in CLUSTERS if c != x], events=None, rate=10.0, seed=3)
    await sim.churn(x, events=None, rate=200.0, seed=4)
    # mid-reconcile: X's owner is busy writing the load when it dies
    await three.until(lambda d: None if cluster_field(d, "events").get(x, 0) >= 150
                      else "X has not seen 150 events yet", instances=[three.instances[victim]])
    survivors = [three.instances[n] for n in sorted(docs) if n != victim]
    mark = {i.id: len(i.lines) for i in survivors}

    killed = now()
    await three.instances[victim].kill()

    def x_owned_and_synced(d: Statuses) -> str | None:
        holders = owners(d).get(x, [])
        if len(holders) != 1:
            return f"{x} held by {holders}"
        entry = next(c for c in d[holders[0]]["clusters"] if c["id"] == x)  # type: ignore[index]
        if not entry["last_full_sync"] or entry["full_syncs"] < 1:
            return f"{x} on {holders[0]}: no full sync yet ({entry['state']})"
        return None

    after = await three.until(x_owned_and_synced, timeout=S + EXPIRY_SLACK, instances=survivors)
    took = now() - killed
    new_owner = owners(after)[x][0]
    await three.instances[new_owner].wait_for_line(f"cluster {x} pods: full sync (start) done",
                                                   after=mark[new_owner])
    owner, epoch = lease_rows(dsn)[x]
    assert owner == new_owner and epoch > old_epoch
    await three.settled([i.id for i in survivors])
    await sim.stop_churn(CLUSTERS)
    settle = await converge(sim, dsn, CLUSTERS)
    print(f"row 17: {x} owned and fully synced by {new_owner} {took:.1f}s after SIGKILL "
          f"(S = {S}s); table = truth {settle:.1f}s after the churn stopped")


async def test_row18_zombie_is_fenced_or_stands_down_then_rejoins(fleet: Fleet) -> None:
    sim, dsn, S = fleet.sim, fleet.dsn, fleet.session_timeout
    docs = await fleet.start_three(own_users=True)
    zombie, others = "sync-1", ["sync-0", "sync-2"]
    theirs = share(docs, zombie)
    z = fleet.instances[zombie]
    pid = z.pid
    await sim.churn_all(CLUSTERS, events=None, rate=10.0, seed=5)
    await fleet.until(lambda d: None if all(c["events"] > 0 for c in d[zombie]["clusters"])  # type: ignore[index]
                      else "the zombie has not written churn yet", instances=[z])
    # The pause falls between two of its transactions (paused inside one, it blocks the
    # takeover: test_scaleout_defects.py). Quiet first, so that such a moment comes.
    await sim.stop_churn(CLUSTERS)
    await converge(sim, dsn, CLUSTERS)
    old = lease_rows(dsn)
    marks = {n: len(i.lines) for n, i in fleet.instances.items()}
    await pause_between_writes(z, dsn, fleet.db_user(1))
    paused = now()
    await sim.churn_all(CLUSTERS, events=None, rate=10.0, seed=6)  # it misses all of this

    # its session expires; the others take its clusters over and finish a full sync each
    taken = await fleet.settled(others, timeout=S + EXPIRY_SLACK)
    takeover = now() - paused
    leases = lease_rows(dsn)
    for cluster in theirs:
        new_owner = owners(taken)[cluster][0]
        entry = next(c for c in taken[new_owner]["clusters"]  # type: ignore[index]
                     if c["id"] == cluster)
        assert leases[cluster] == (new_owner, entry["epoch"])
        assert entry["epoch"] > old[cluster][1]
    # more changes it never saw, written by the new owners before it wakes up
    await sim.stop_churn(CLUSTERS)
    await sim.churn_all(sorted(theirs), events=100, rate=None, seed=7)
    await sim.wait_churn(theirs)
    await converge(sim, dsn, CLUSTERS)
    remaining = paused + 2 * S - now()
    if remaining > 0:
        await asyncio.sleep(remaining)  # the fault's duration (2 x S), not a synchronisation

    mark = len(z.lines)
    z.signal(signal.SIGCONT)
    await z.wait_for_line("owning 0 clusters", after=mark)
    # it rejoins as a new incarnation and gets its ring share back, with higher epochs
    final = await fleet.settled()
    assert z.pid == pid and z.alive
    assert share(final, zombie) == theirs
    fenced = fence_lines(fleet, zombie, mark)
    for name in others:
        assert not fence_lines(fleet, name, marks[name]), f"{name} was fenced: not a zombie"
    for c in final[zombie]["clusters"]:  # type: ignore[index]
        assert c["epoch"] > leases[c["id"]][1]
    leases_follow_status(dsn, final)
    await converge(sim, dsn, CLUSTERS)
    print(f"row 18: takeover {takeover:.1f}s after SIGSTOP (S = {S}s); after SIGCONT the "
          f"zombie logged {len(fenced)} fenced reconcilers: {fenced[:2]}")


async def test_row20_partition_from_zookeeper_stands_down_before_takeover(
    fleet: Fleet, zk_server: ZkServer, proxies: Proxies,
) -> None:
    sim, dsn, S = fleet.sim, fleet.dsn, fleet.session_timeout
    proxy = await proxies(zk_server)
    docs = await fleet.start_three(proxied=proxy.address)
    victim, master = fleet.instances["sync-2"], fleet.instances["sync-0"]
    theirs = share(docs, victim.id)
    old = lease_rows(dsn)
    await sim.churn_all(CLUSTERS, events=None, rate=10.0, seed=7)
    v_mark, m_mark = len(victim.lines), len(master.lines)

    cut = now()
    proxy.blackhole()
    taken = await fleet.settled(["sync-0", "sync-1"], timeout=S + EXPIRY_SLACK)
    # the victim stopped its reconcilers (flushed, leases released) before the master
    # published the assignment without it, and within S of the cut
    _, stood_down, _ = await victim.wait_for_line("running 0 clusters", after=v_mark)
    published = [t for _, t, _ in master.find("published assignment", m_mark)]
    assert published and stood_down < published[0], (stood_down - cut, published)
    assert stood_down - cut < S
    doc = await victim.status()  # its HTTP side is not partitioned
    assert doc is not None and doc["clusters"] == [] and not doc["ready"]
    leases = lease_rows(dsn)
    for cluster in theirs:
        assert leases[cluster][0] in ("sync-0", "sync-1")
        assert leases[cluster][1] > old[cluster][1]
    assert not fence_lines(fleet, victim.id, v_mark), "it stood down: nothing to fence"
    remaining = cut + 2 * S - now()
    if remaining > 0:
        await asyncio.sleep(remaining)  # the fault's duration (2 x S), not a synchronisation

    proxy.heal()
    final = await fleet.settled()
    assert share(final, victim.id) == theirs  # same id, same ring share, new epochs
    await sim.stop_churn(CLUSTERS)
    await converge(sim, dsn, CLUSTERS)
    leases_follow_status(dsn, final)
    print(f"row 20: stood down {stood_down - cut:.2f}s after the cut, assignment without it "
          f"published {published[0] - cut:.2f}s after (S = {S}s); takeover settled: "
          f"{sorted(owners(taken))== CLUSTERS}")


async def test_row19_blip_shorter_than_the_session_changes_nothing(
    fleet: Fleet, zk_server: ZkServer, proxies: Proxies,
) -> None:
    S = fleet.session_timeout
    proxy = await proxies(zk_server)
    before = await fleet.start_three(proxied=proxy.address)
    victim = fleet.instances["sync-2"]
    observer = await Observer(zk_server.hosts, fleet.zk_root).start()
    try:
        sessions = await observer.member_sessions()

        def fingerprint(d: Statuses) -> str:
            master = d["sync-0"]
            assert master is not None
            return dumps({
                "version": master["assignment_version"],
                "assignments": master["assignments"],
                "clusters": {c["id"]: (name, c["epoch"], c["full_syncs"], c["restarts"])
                             for name, doc in d.items() if doc for c in doc["clusters"]},
            })

        expected = fingerprint(before)
        mark = len(victim.lines)
        paused = now()
        proxy.pause()
        await asyncio.sleep(0.4 * S)  # the fault's duration, not a synchronisation
        proxy.resume()
        # Look continuously until S after the pause began: by then the server would have
        # expired the session and the stand-down timer (2/3 S) would have fired. At every
        # look, nothing has changed: no stand-down, no reassignment, no full sync.
        looks = 0
        while now() < paused + S + 0.5:
            docs = await fleet.statuses()
            if all(docs.values()):
                assert fingerprint(docs) == expected
                looks += 1
            await asyncio.sleep(POLL)
        assert looks > 0
        assert await observer.member_sessions() == sessions  # same sessions, same nodes
        for needle in ("presumed dead", "session lost", "owning", "running"):
            assert not victim.find(needle, mark), victim.tail()

        # the watches were re-armed after the blip: a later change still reaches it
        await fleet.add(3)
        final = await fleet.settled()
        assert final["sync-2"]["members"] == ["sync-0", "sync-1", "sync-2", "sync-3"]  # type: ignore[index]
    finally:
        await observer.close()


async def test_row21_zookeeper_restart_under_the_instances(
    fleet_factory: Callable[..., Fleet], private_zk: ZkServer,
) -> None:
    fleet = fleet_factory(private_zk, session_timeout=4.0)
    sim, dsn = fleet.sim, fleet.dsn
    before = await fleet.start_three()
    pids = {i.id: i.pid for i in fleet.instances.values()}
    await sim.churn_all(CLUSTERS, events=None, rate=10.0, seed=8)
    marks = {i.id: len(i.lines) for i in fleet.instances.values()}

    down = now()
    await asyncio.to_thread(private_zk.stop)
    for inst in fleet.instances.values():
        await inst.wait_for_line("ZooKeeper connection suspended", after=marks[inst.id])
    await asyncio.to_thread(private_zk.start)
    outage = now() - down
    final = await fleet.settled()
    recovered = now() - down
    assert {i.id: i.pid for i in fleet.live()} == pids  # nobody restarted
    assert len(masters(final)) == 1
    stood_down = [i.id for i in fleet.instances.values()
                  if i.find("presumed dead", marks[i.id]) or i.find("session lost", marks[i.id])]
    if not stood_down:  # back within the stand-down time: no churn at all
        assert final["sync-0"]["assignment_version"] == before["sync-0"]["assignment_version"]  # type: ignore[index]
        assert cluster_field(final, "full_syncs") == cluster_field(before, "full_syncs")
        assert cluster_field(final, "epoch") == cluster_field(before, "epoch")
    await sim.stop_churn(CLUSTERS)
    await converge(sim, dsn, CLUSTERS)
    leases_follow_status(dsn, final)
    kept = sum(bool(i.find("same session", marks[i.id])) for i in fleet.instances.values())
    print(f"row 21: ZooKeeper down {outage:.1f}s (S = {fleet.session_timeout}s); settled "
          f"{recovered:.1f}s after the stop; {kept}/3 instances kept their session; "
          f"stood down: {stood_down}")


async def test_row22_membership_churn_moves_about_one_nth_per_change(three: Fleet) -> None:
    sim, dsn = three.sim, three.dsn
    observer = await Observer(three.zk_hosts, three.zk_root).start()
    try:
        await sim.churn_all(CLUSTERS, events=None, rate=10.0, seed=9)
        members = ["sync-0", "sync-1", "sync-2"]
        docs = await three.settled(members)
        plan = docs[masters(docs)[0]]["assignments"]  # type: ignore[index]
        report = []
        for change, n in (("join", 3), ("leave", 0), ("join", 4), ("leave", 3)):
            name = f"sync-{n}"
            if change == "join":
                await three.add(n)
                members = sorted([*members, name])
            else:
                three.instances[name].signal(signal.SIGTERM)
                assert await three.instances[name].wait_exit() == 0
                members.remove(name)
            docs = await three.settled(members)
            head = masters(docs)[0]
            new_plan = docs[head]["assignments"]  # type: ignore[index]
            moved = {c for c in CLUSTERS if plan[c] != new_plan[c]}
            assert new_plan == assign(CLUSTERS, members)
            if change == "join":  # only the newcomer's share moves, and only to it
                assert moved == share(docs, name)
            else:  # only the leaver's share moves
                assert moved == {c for c, o in plan.items() if o == name}
            assert docs[head]["moved_last"] == len(moved)  # type: ignore[index]
            report.append(f"{change} {name} -> {len(members)} members: {len(moved)}/12 moved"
                          f" (1/N = {12 / len(members):.1f})")
            plan = new_plan
        await sim.stop_churn(CLUSTERS)
        await converge(sim, dsn, CLUSTERS)
        leases_follow_status(dsn, docs)
        assert len(observer.history) >= 4
        assert epochs_only_grow(observer.history) is None, epochs_only_grow(observer.history)
        print("row 22: " + "; ".join(report))
    finally:
        await observer.close()
