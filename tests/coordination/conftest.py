"""Fixtures for the coordination suite: a private ZooKeeper server, proxies, helpers.

The server is the Debian package's ZooKeeper run as a foreground java process
(`tests/zkserver.py`), one per test session; each test works under its own root path.
A test that restarts ZooKeeper starts its own server instead (`private_zk`), so the
shared one never goes away under another test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from coord_support import Changes, guard
from tcpproxy import TcpProxy  # tests/ is on sys.path (pytest's rootdir conftest)
from zkserver import ZkServer

from synchronizer.coordination.zk import ZkSession


@pytest.fixture
def zk_root() -> str:
    """A fresh root path, so tests never see each other's nodes."""
    return f"/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Callable[[ZkServer], Awaitable[TcpProxy]]]:
    """Make TCP fault proxies in front of a server; all closed at teardown."""
    proxies: list[TcpProxy] = []

    async def make(server: ZkServer) -> TcpProxy:
        proxy = await TcpProxy(server.host, server.port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


@pytest.fixture
async def observer(zk_server: ZkServer) -> AsyncIterator[ZkSession]:
    """A plain session on the shared server, for the test to look and poke with."""
    session = ZkSession(zk_server.hosts, session_timeout=10.0)
    await session.start()
    await guard(session.wait_connected())
    yield session
    await session.close()


@pytest.fixture
async def changes() -> AsyncIterator[Changes]:
    """A `Changes` hub, closed at teardown."""
    hub = Changes()
    yield hub
    await hub.close()
