"""Fixtures for the scale-out suite: ZooKeeper, the simulator process, the CMDB with its
audit trigger, a fleet of synchronizer subprocesses, and fault proxies.

One ZooKeeper server serves the whole suite (each test has its own root path); the test
that restarts ZooKeeper starts a private one. Every test gets a fresh MariaDB database
(`mysql_dsn`), created and migrated by `open_store` before any instance starts, with the
audit trigger of tests/integration/harness.py installed (the oracle for M).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from mariadbserver import MariaDbServer
from scaleout_oracles import prepare_cmdb
from scaleout_support import CLUSTERS, Fleet, SimProcess
from tcpproxy import TcpProxy
from zkserver import ZkServer

PODS = 40
"""Pods per cluster at start: enough rows to write, small enough for fast full syncs."""



@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimProcess]:
    """The simulator process with the 12 clusters, PODS pods each."""
    process = await SimProcess.start(tmp_path, CLUSTERS, pods=PODS)
    try:
        yield process
    finally:
        await process.close()


@pytest.fixture
async def cmdb(mysql_dsn: str) -> str:
    """A fresh database on the shared server with the tables and the audit trigger."""
    return await prepare_cmdb(mysql_dsn)


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[MariaDbServer]:
    """A MariaDB server of the test's own."""
    with MariaDbServer(tmp_path / "mariadb") as server:
        yield server


@pytest.fixture
async def private_cmdb(private_mariadb: MariaDbServer) -> str:
    """The same on a MariaDB server of the test's own (for `dbfaults`: its transaction
    list is nobody else's to read, and its settings are the test's to change)."""
    return await prepare_cmdb(private_mariadb.create_database("cmdb"))


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[[ZkServer], Awaitable[TcpProxy]]]:
    """Make TCP fault proxies in front of a ZooKeeper server; closed at teardown (after
    the fleet, which is torn down first because it was requested later)."""
    made: list[TcpProxy] = []

    async def make(server: ZkServer) -> TcpProxy:
        proxy = await TcpProxy(server.host, server.port).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        await proxy.close()


def _fleet_factory(tmp_path: Path, sim: SimProcess, cmdb: str
                   ) -> tuple[list[Fleet], Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(server: ZkServer, *, session_timeout: float = 3.0, lease_ttl: float = 10.0,
             dsn: str | None = None) -> Fleet:
        fleet = Fleet(tmp=tmp_path, sim=sim, dsn=dsn or cmdb, zk_hosts=server.hosts,
                      zk_root=f"/scaleout-{uuid.uuid4().hex[:10]}",
                      session_timeout=session_timeout, lease_ttl=lease_ttl)
        fleets.append(fleet)
        return fleet

    return fleets, make


@pytest.fixture
async def fleet_factory(tmp_path: Path, sim: SimProcess, cmdb: str,
                        proxies: Callable[[ZkServer], Awaitable[TcpProxy]],
                        ) -> AsyncIterator[Callable[..., Fleet]]:
    """`make(zk_server, session_timeout=..., lease_ttl=..., dsn=...)` -> an empty `Fleet`
    (on the `cmdb` database unless `dsn` names another); every instance of every fleet is
    stopped at teardown."""
    fleets, make = _fleet_factory(tmp_path, sim, cmdb)
    try:
        yield make
    finally:
        for fleet in fleets:
            await fleet.close()


@pytest.fixture
async def fleet(fleet_factory: Callable[..., Fleet], zk_server: ZkServer) -> Fleet:
    """An empty fleet on the shared ZooKeeper, session timeout 3 s."""
    return fleet_factory(zk_server)


@pytest.fixture
async def three(fleet: Fleet) -> Fleet:
    """sync-0..sync-2 started one by one and settled: sync-0 is the master, the 12
    clusters are owned once each and fully synced."""
    await fleet.start_three()
    return fleet
