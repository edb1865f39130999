"""ZkSession on a real ZooKeeper: watches re-arm, the stand-down timer, session loss."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from coord_support import Changes, expire, guard
from tcpproxy import TcpProxy
from zkserver import ZkServer

from synchronizer.coordination.zk import SessionState, ZkSession


async def started(hosts: str, timeout: float) -> ZkSession:
    session = ZkSession(hosts, session_timeout=timeout)
    await session.start()
    await guard(session.wait_connected())
    return session


async def test_data_watch_rearms_on_every_change(observer: ZkSession, zk_root: str) -> None:
    path = f"{zk_root}/doc"
    client = observer.client
    stream = observer.watch_data(path)
    assert await guard(anext(stream)) == (None, None)
    await observer.call(client.create_async, path, b"0", makepath=True)
    data, _ = await guard(anext(stream))
    assert data == b"0"
    for i in range(1, 40):  # every later change is seen: the watch was re-armed each time
        await observer.call(client.set_async, path, str(i).encode())
        data, stat = await guard(anext(stream))
        assert data == str(i).encode()
        assert stat is not None and stat.version == i
    await observer.call(client.delete_async, path)
    assert await guard(anext(stream)) == (None, None)
    await stream.aclose()


async def test_children_watch_rearms_on_every_change(observer: ZkSession, zk_root: str) -> None:
    path = f"{zk_root}/kids"
    stream = observer.watch_children(path)
    assert await guard(anext(stream)) == []
    for i in range(15):
        await observer.call(observer.client.create_async, f"{path}/k{i:02d}", b"")
        assert await guard(anext(stream)) == [f"k{j:02d}" for j in range(i + 1)]
    await stream.aclose()


async def test_stands_down_before_the_session_can_expire(
    zk_server: ZkServer, observer: ZkSession, zk_root: str, changes: Changes,
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    proxy = await proxy_factory(zk_server)
    session = await started(proxy.address, timeout=2.0)
    try:
        node = f"{zk_root}/mine"
        await session.call(session.client.create_async, node, b"", ephemeral=True, makepath=True)
        first = session.view.value
        assert first.live and first.generation == 1
        changes.follow("view", session.view.stream())
        changes.follow("node", observer.watch_data(node))

        proxy.blackhole()  # a partition: nothing gets through, nothing is closed
        await changes.until(lambda: not session.view.value.live)
        # Stood down while the server still holds the session: its ephemeral node is there.
        assert await observer.call(observer.client.exists_async, node) is not None

        await changes.until(lambda: changes.latest.get("node") == (None, None))  # expired now
        proxy.heal()
        await changes.until(lambda: session.view.value.state is SessionState.CONNECTED
                            and session.view.value.generation == 2)
        states = [view.state for view in changes.history["view"]]
        assert SessionState.LOST in states
        assert session.view.value.live
    finally:
        await session.close()


async def test_blip_shorter_than_the_session_timeout_changes_nothing(
    zk_server: ZkServer, changes: Changes,
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    proxy = await proxy_factory(zk_server)
    session = await started(proxy.address, timeout=3.0)
    try:
        before = session.view.value
        changes.follow("view", session.view.stream())
        proxy.pause()
        await asyncio.sleep(0.4 * 3.0)  # the fault's duration, not a wait for an outcome
        proxy.resume()
        await guard(session.call(session.client.exists_async, "/"))
        after = session.view.value
        assert (after.session_id, after.generation) == (before.session_id, before.generation)
        assert all(view.live for view in changes.history["view"])
    finally:
        await session.close()


async def test_session_expired_elsewhere_gives_a_new_generation(
    zk_server: ZkServer, changes: Changes,
    proxy_factory: Callable[[ZkServer], Awaitable[TcpProxy]],
) -> None:
    proxy = await proxy_factory(zk_server)
    session = await started(proxy.address, timeout=2.0)
    try:
        changes.follow("view", session.view.stream())
        old = session.view.value
        await expire(session, proxy, zk_server.hosts)
        await changes.until(lambda: session.view.value.generation == old.generation + 1
                            and session.view.value.state is SessionState.CONNECTED)
        assert session.view.value.session_id != old.session_id
        assert any(v.state is SessionState.LOST and not v.live for v in changes.history["view"])
    finally:
        await session.close()
