"""Election on kazoo's Lock recipe: no herd (row 23), no orphan on an ambiguous create (row 24)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from coord_support import Changes, guard
from tcpproxy import TcpProxy
from zkserver import ZkServer

from synchronizer.coordination.election import Election
from synchronizer.coordination.zk import ZkSession

CONTENDERS = 20


def watched_paths(server: ZkServer) -> dict[str, int]:
    """`wchp`: every watched path with its number of watching sessions (server's view)."""
    out: dict[str, int] = {}
    current = None
    for line in server.four_letter("wchp").splitlines():
        if line.startswith("/"):
            current = line.strip()
            out[current] = 0
        elif line.strip().startswith("0x") and current is not None:
            out[current] += 1
    return out


async def until_watched(server: ZkServer, prefix: str, count: int) -> dict[str, int]:
    """Poll `wchp` until `count` contender nodes under `prefix` are watched (no event exists)."""
    async with asyncio.timeout(30):
        while True:
            paths = await asyncio.to_thread(watched_paths, server)
            if sum(1 for p in paths if p.startswith(prefix + "/")) >= count:
                return paths
            await asyncio.sleep(0.05)


async def test_only_the_successor_wakes_when_the_leader_dies(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
) -> None:
    path = f"{zk_root}/election"
    await observer.ensure_path(path)
    sessions = [ZkSession(zk_server.hosts, session_timeout=5.0) for _ in range(CONTENDERS)]
    elections = [Election(s, path, f"c{i}") for i, s in enumerate(sessions)]
    try:
        for session in sessions:
            await session.start()
        for session in sessions:
            await guard(session.wait_connected())
        for i, election in enumerate(elections):
            election.start()
            changes.follow(f"lead{i}", election.leaderships())
        await changes.until(lambda: len(changes.latest) == 1)
        (leader_key,) = changes.latest
        leader = int(leader_key.removeprefix("lead"))

        # Every waiting contender watches exactly its predecessor; nobody watches the path.
        paths = await until_watched(zk_server, path, CONTENDERS - 1)
        assert path not in paths
        assert all(n == 1 for p, n in paths.items() if p.startswith(path + "/"))
        assert all(e.wakeups == 0 for e in elections)

        nodes = sorted(await observer.call(observer.client.get_children_async, path),
                       key=lambda n: re.findall(r"\d{10}$", n)[0])
        successor_node = nodes[1]
        await sessions[leader].close()  # the leader dies; its node goes with its session
        await changes.until(lambda: len(changes.latest) == 2)
        (new_key,) = set(changes.latest) - {leader_key}
        successor = int(new_key.removeprefix("lead"))
        assert changes.latest[new_key].node.endswith(successor_node)

        # Round trips on every other client: a notification sent before the reply would
        # have been delivered by now.
        for _ in range(2):
            for i, session in enumerate(sessions):
                if i != leader:
                    await guard(session.call(session.client.exists_async, "/"))
        woken = {i: e.wakeups for i, e in enumerate(elections) if e.wakeups}
        assert woken == {successor: 1}
    finally:
        for election in elections:
            await election.stop(grace=5.0)
        for session in sessions:
            await session.close()


async def test_ambiguous_create_leaves_no_orphan_contender(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    path = f"{zk_root}/election"
    await observer.ensure_path(path)
    changes.follow("children", observer.watch_children(path))
    proxy = await proxy_factory(zk_server)
    session = ZkSession(proxy.address, session_timeout=5.0)
    await session.start()
    election = Election(session, path, "ambiguous")
    try:
        await guard(session.wait_connected())
        generation = session.view.value.generation
        proxy.blackhole("downstream")  # requests reach the server, replies are lost
        election.start()  # its first request is the create
        await changes.until(
            lambda: any(c.startswith(election.prefix) for c in changes.latest.get("children", ())))
        (created,) = changes.latest["children"]
        proxy.reset()  # the connection drops with the create's reply outstanding
        proxy.heal()
        changes.follow("lead", election.leaderships())
        await changes.until(lambda: "lead" in changes.latest)
        # The retry found its own node by the UUID prefix instead of creating another one.
        assert changes.latest["lead"].node == f"{path}/{created}"
        children = await observer.call(observer.client.get_children_async, path)
        assert children == [created]
        assert session.view.value.generation == generation  # same session throughout
    finally:
        await election.stop(grace=5.0)
        await session.close()
