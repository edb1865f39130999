"""Fixtures for the fault-matrix suite: the simulator process, CMDB databases (on the
shared server, or on a private MariaDB the test may crash, make read-only or reconfigure),
fleets of synchronizer subprocesses, and TCP fault proxies in front of MariaDB.

The processes, oracles and database faults are the scale-out suite's and tests/' own
(`scaleout_support`, `scaleout_oracles`, `dbfaults`, `tcpproxy`, `mariadbserver`,
`zkserver`), reused as they are: tests/scaleout is put on the import path here, as pytest
does for that folder's own tests.

Teardown runs in the reverse order of set-up, and a test's fixtures are set up in the
order of its parameters: a test names its database and proxies before `fleets`, so the
instances stop before the server or proxy they write through goes away.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scaleout"))

from faults_support import CLUSTERS, PODS, MySqlProxies, fleet_maker
from mariadbserver import MariaDbServer
from scaleout_oracles import prepare_cmdb
from scaleout_support import Fleet, SimProcess


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimProcess]:
    """The simulator process with CLUSTERS, PODS pods each."""
    process = await SimProcess.start(tmp_path, CLUSTERS, pods=PODS)
    try:
        yield process
    finally:
        await process.close()


@pytest.fixture
async def cmdb(mysql_dsn: str) -> str:
    """A fresh database on the shared server, with the tables and the audit trigger."""
    return await prepare_cmdb(mysql_dsn)


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[MariaDbServer]:
    """A MariaDB server of the test's own: free to crash, restart, make read-only."""
    with MariaDbServer(tmp_path / "mariadb") as server:
        yield server


@pytest.fixture
async def private_cmdb(private_mariadb: MariaDbServer) -> str:
    """A database on the private server, with the tables and the audit trigger."""
    return await prepare_cmdb(private_mariadb.create_database("cmdb"))


@pytest.fixture
async def mysql_proxies() -> AsyncIterator[MySqlProxies]:
    """`await mysql_proxies.front(dsn)` -> (proxy, the DSN through it); closed at teardown."""
    proxies = MySqlProxies()
    try:
        yield proxies
    finally:
        await proxies.close()


@pytest.fixture
async def fleets(tmp_path: Path, sim: SimProcess) -> AsyncIterator[Callable[..., Fleet]]:
    """`fleets(dsn, zk=None, **sync)` -> an empty `Fleet` (standalone without `zk`); every
    instance is stopped at teardown."""
    made: list[Fleet] = []
    try:
        yield fleet_maker(tmp_path, sim, made)
    finally:
        for fleet in made:
            await fleet.close()
