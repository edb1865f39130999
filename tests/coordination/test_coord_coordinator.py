"""ZooKeeperCoordinator end to end, in-process, on a real ZooKeeper (rows 17-22)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from coord_support import Changes, expire, guard
from tcpproxy import TcpProxy
from test_coord_standalone import MutableRegistry, RecordingMetrics, static
from zkserver import ZkServer

from reconciler import Fence
from synchronizer.coordination import (
    Assignment,
    Member,
    ZooKeeperCoordinator,
)
from synchronizer.coordination.assignment import Publisher
from synchronizer.coordination.election import LeadershipLost
from synchronizer.coordination.zk import SessionState, ZkSession

CLUSTERS = [f"cluster-{i:02d}" for i in range(12)]


def make(i: int, hosts: str, root: str, *, timeout: float = 2.0, registries: Any = None,
         pull: float = 60.0, metrics: Any = None) -> ZooKeeperCoordinator:
    name = f"sync-{i}"
    return ZooKeeperCoordinator(
        name, Member(name, "127.0.0.1", 8000 + i, 9000 + i), hosts, root, timeout,
        registries if registries is not None else [static(*CLUSTERS)], pull, metrics)


@pytest.fixture
async def fleet(
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> AsyncIterator[list[ZooKeeperCoordinator]]:
    """Coordinators the test appends; all stopped at teardown (before any proxy closes)."""
    coords: list[ZooKeeperCoordinator] = []
    yield coords
    for coord in coords:
        await coord.stop()


def owned(changes: Changes, coord: ZooKeeperCoordinator) -> Mapping[str, Fence]:
    return {c: a.fence for c, a in changes.latest.get(coord.instance_id, {}).items()}


def partition(changes: Changes, coords: list[ZooKeeperCoordinator]) -> dict[str, str] | None:
    """{cluster: owner} if the coordinators' owned sets are disjoint, else None."""
    out: dict[str, str] = {}
    for coord in coords:
        for cluster in owned(changes, coord):
            if cluster in out:
                return None
            out[cluster] = coord.instance_id
    return out


def converged(changes: Changes, coords: list[ZooKeeperCoordinator],
              clusters: list[str] = CLUSTERS) -> bool:
    doc: Assignment | None = changes.latest.get("doc")
    owners = partition(changes, coords)
    return (
        doc is not None
        and sorted(doc.members) == sorted(c.instance_id for c in coords)
        and owners is not None
        and owners == dict(doc.owners)
        and sorted(owners) == sorted(clusters)
        and all(c.ready for c in coords)
    )


async def follow(changes: Changes, observer: ZkSession, root: str,
                 coords: list[ZooKeeperCoordinator]) -> None:
    async def docs() -> AsyncIterator[Assignment]:
        async for data, _ in observer.watch_data(f"{root}/assignment"):
            yield Assignment.decode(data)

    changes.follow("doc", docs())
    for coord in coords:
        changes.follow(coord.instance_id, coord.owned())


async def test_three_members_one_master_every_cluster_once_then_graceful_stop(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    fleet: list[ZooKeeperCoordinator],
) -> None:
    metrics = [RecordingMetrics() for _ in range(3)]
    fleet += [make(i, zk_server.hosts, zk_root, metrics=metrics[i]) for i in range(3)]
    for coord in fleet:
        await coord.start()
    await follow(changes, observer, zk_root, fleet)
    await changes.until(lambda: converged(changes, fleet))

    masters = [c for c in fleet if c.status().master]
    assert len(masters) == 1
    master = masters[0]
    doc: Assignment = changes.latest["doc"]
    assert doc.master == master.instance_id
    for coord, m in zip(fleet, metrics, strict=True):
        status = coord.status()
        assert status.state == "connected"
        assert status.master_id == master.instance_id
        assert status.members == ("sync-0", "sync-1", "sync-2")
        assert status.assignments == (dict(doc.owners) if coord is master else None)
        assert m.gauges[("is_master", ())] == (1 if coord is master else 0)
        assert m.gauges[("assigned_clusters", ())] == len(owned(changes, coord))
        assert m.gauges[("zk_session_state", (("state", "connected"),))] == 1
        assert m.gauges[("zk_session_state", (("state", "suspended"),))] == 0
        for cluster, fence in owned(changes, coord).items():
            assert fence == Fence(owner=coord.instance_id, epoch=doc.epochs[cluster])
            assert fence.epoch > 0
    assert metrics[fleet.index(master)].counters["rebalances_total"] >= 1
    data, stat = await observer.call(observer.client.get_async, f"{zk_root}/members/sync-1")
    assert json.loads(data) == {"address": "127.0.0.1", "port": 8001, "metric_port": 9001}
    assert stat.ephemeralOwner == fleet[1].session.view.value.session_id

    # Graceful stop of the master: its clusters move, nothing else does, and every moved
    # cluster's epoch is higher than before.
    before = dict(doc.owners)
    epochs = dict(doc.epochs)
    leaving = master.instance_id
    await master.stop()
    fleet.remove(master)
    await changes.until(lambda: converged(changes, fleet))
    after: Assignment = changes.latest["doc"]
    assert after.master in {c.instance_id for c in fleet}
    for cluster, owner in before.items():
        if owner == leaving:
            assert after.owners[cluster] != leaving
            assert after.epochs[cluster] > epochs[cluster]
        else:
            assert after.owners[cluster] == owner
            assert after.epochs[cluster] == epochs[cluster]
    new_master = next(c for c in fleet if c.status().master)
    assert new_master.status().moved_last == sum(1 for o in before.values() if o == leaving)


async def test_crashed_member_stands_down_first_then_is_replaced_then_rejoins(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    fleet: list[ZooKeeperCoordinator],
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    proxy = await proxy_factory(zk_server)
    fleet += [make(0, zk_server.hosts, zk_root), make(1, zk_server.hosts, zk_root),
              make(2, proxy.address, zk_root)]
    for coord in fleet:
        await coord.start()
    await follow(changes, observer, zk_root, fleet)
    await changes.until(lambda: converged(changes, fleet) and bool(owned(changes, fleet[2])))
    victim = fleet[2]
    doc: Assignment = changes.latest["doc"]
    victims = {c for c, o in doc.owners.items() if o == victim.instance_id}
    old_epochs = dict(doc.epochs)
    first_session = victim.session.view.value.session_id

    mark = len(changes.log)
    proxy.blackhole()  # a partition (or a hung host): the session expires on the server
    await changes.until(lambda: set(doc_owners(changes)) == set(CLUSTERS)
                        and victim.instance_id not in changes.latest["doc"].members)
    # It stood down (owned nothing) before the master gave its clusters away.
    after_fault = list(enumerate(changes.log))[mark:]
    stood_down = next(i for i, (name, value) in after_fault
                      if name == victim.instance_id and value == {})
    handed_over = next(i for i, (name, value) in after_fault
                       if name == "doc" and victim.instance_id not in value.members)
    assert stood_down < handed_over
    assert victim.status().state in ("suspended", "lost")
    assert not victim.ready
    for cluster in victims:
        assert changes.latest["doc"].epochs[cluster] > old_epochs[cluster]

    proxy.heal()  # it comes back: LOST, a new session, a new incarnation, new epochs
    await changes.until(lambda: converged(changes, fleet) and bool(owned(changes, victim)))
    assert victim.session.view.value.session_id != first_session
    latest: Assignment = changes.latest["doc"]
    for cluster, fence in owned(changes, victim).items():
        assert fence.epoch == latest.epochs[cluster]
        assert fence.epoch > old_epochs[cluster]


def doc_owners(changes: Changes) -> Mapping[str, str]:
    doc: Assignment | None = changes.latest.get("doc")
    return doc.owners if doc is not None else {}


async def test_assignment_watch_follows_every_registry_change(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    fleet: list[ZooKeeperCoordinator],
) -> None:
    registry = MutableRegistry(*CLUSTERS[:2])
    fleet += [make(i, zk_server.hosts, zk_root, registries=[registry], pull=0.05)
              for i in range(2)]
    for coord in fleet:
        await coord.start()
    await follow(changes, observer, zk_root, fleet)
    for k in range(2, 16):  # each change is a new publish every member must see
        registry.ids.add(f"extra-{k}")
        expected = sorted(registry.ids)
        await changes.until(lambda expected=expected: converged(changes, fleet, expected))
    assert changes.latest["doc"].version >= 14


async def test_zookeeper_restart_within_the_session_timeout_changes_nothing(
    private_zk: ZkServer, zk_root: str, changes: Changes, fleet: list[ZooKeeperCoordinator],
) -> None:
    fleet += [make(i, private_zk.hosts, zk_root, timeout=10.0) for i in range(3)]
    for coord in fleet:
        await coord.start()
    observer = ZkSession(private_zk.hosts, session_timeout=10.0)
    await observer.start()
    try:
        await follow(changes, observer, zk_root, fleet)
        for coord in fleet:
            changes.follow(f"view-{coord.instance_id}", coord.session.view.stream())
        await changes.until(lambda: converged(changes, fleet))
        owned_before = {c.instance_id: owned(changes, c) for c in fleet}
        version = changes.latest["doc"].version
        sessions = {c.instance_id: c.session.view.value.session_id for c in fleet}
        mark = len(changes.log)

        await asyncio.to_thread(private_zk.stop)
        await changes.until(lambda: all(
            c.session.view.value.state is not SessionState.CONNECTED for c in fleet))
        await asyncio.to_thread(private_zk.start)
        await changes.until(lambda: all(
            c.session.view.value.state is SessionState.CONNECTED for c in fleet))
        for coord in fleet:  # a round trip each: anything pending has been delivered
            await guard(coord.session.call(coord.session.client.exists_async, "/"))

        assert {c.instance_id: c.session.view.value.session_id for c in fleet} == sessions
        assert {c.instance_id: owned(changes, c) for c in fleet} == owned_before
        assert changes.latest["doc"].version == version
        owned_events = [name for name, _ in changes.log[mark:] if not name.startswith(
            ("view-", "doc"))]
        assert owned_events == []  # never stood down, never re-assigned
        assert all(c.ready for c in fleet)
    finally:
        await changes.close()
        await observer.close()


async def test_blip_shorter_than_the_session_timeout_keeps_ownership(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    fleet: list[ZooKeeperCoordinator],
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    proxy = await proxy_factory(zk_server)
    fleet += [make(0, zk_server.hosts, zk_root, timeout=3.0),
              make(1, proxy.address, zk_root, timeout=3.0)]
    for coord in fleet:
        await coord.start()
    await follow(changes, observer, zk_root, fleet)
    await changes.until(lambda: converged(changes, fleet) and bool(owned(changes, fleet[1])))
    mark = len(changes.log)
    held = owned(changes, fleet[1])
    proxy.pause()
    await asyncio.sleep(0.4 * 3.0)  # the fault's duration, not a wait for an outcome
    proxy.resume()
    await guard(fleet[1].session.call(fleet[1].session.client.exists_async, "/"))
    assert owned(changes, fleet[1]) == held
    assert [name for name, _ in changes.log[mark:]] == []


async def test_master_losing_its_session_is_deposed_and_a_deposed_master_cannot_publish(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    fleet: list[ZooKeeperCoordinator],
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    proxy = await proxy_factory(zk_server)
    master = make(0, proxy.address, zk_root)
    fleet.append(master)
    await master.start()  # alone at first, so it is the master
    changes.follow("sync-0-first", master.owned())
    await changes.until(lambda: master.status().master and master.ready)
    fleet += [make(i, zk_server.hosts, zk_root) for i in (1, 2)]
    for coord in fleet[1:]:
        await coord.start()
    await follow(changes, observer, zk_root, fleet)
    await changes.until(lambda: converged(changes, fleet))
    assert [c for c in fleet if c.status().master] == [master]
    lead = master._leading
    assert lead is not None
    changes.follow("master-view", master.session.view.stream())

    # LOST: its election node is gone with the session
    await expire(master.session, proxy, zk_server.hosts)
    await changes.until(lambda: any(
        v.state is SessionState.LOST for v in changes.history["master-view"]))
    await changes.until(lambda: changes.latest["doc"].master not in (None, master.instance_id)
                        and converged(changes, fleet))
    assert not master.status().master
    assert sum(c.status().master for c in fleet) == 1
    assert master.session.view.value.generation == lead.generation + 1

    # The deposed master's old leadership no longer fences anything in: a publish on it
    # is refused by the transaction's check of the (deleted) election node.
    publisher = Publisher(master.session, f"{zk_root}/assignment")
    with pytest.raises(LeadershipLost):
        await guard(publisher.publish(
            lead, lambda current: ({"stolen": master.instance_id}, dict(current.members), {}),
            master=master.instance_id))
    assert "stolen" not in changes.latest["doc"].owners
