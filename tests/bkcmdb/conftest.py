"""Fixtures for the bk-cmdb tests: a live simulator per test (in either dialect), a client
on virtual time pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from bkcmdb_support import SECRET, FakeTime, Observed, seed, settings_for
from pusher_support import Rows, World

from synchronizer.bkcmdb import BkCmdbClient
from synchronizer.bkcmdb.pusher import MemoryDesiredState, MemoryLedger, Pusher
from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator


@pytest.fixture(params=["gateway", "direct"])
def auth_mode(request: pytest.FixtureRequest) -> str:
    """Both dialects bk-cmdb is reached in."""
    return str(request.param)


@pytest.fixture
async def sim(auth_mode: str) -> AsyncIterator[BkCmdbSimulator]:
    """A running simulator, seeded with a business, its default module and three hosts."""
    simulator = BkCmdbSimulator(auth=AuthConfig(mode=auth_mode, app_secret=SECRET))  # type: ignore[arg-type]
    seed(simulator)
    async with simulator:
        yield simulator


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def observed() -> Observed:
    return Observed()


@pytest.fixture
async def cmdb(sim: BkCmdbSimulator, fake_time: FakeTime,
               observed: Observed) -> AsyncIterator[BkCmdbClient]:
    """A client for `sim` whose waits go to `fake_time` and whose requests go to `observed`."""
    client = BkCmdbClient(settings_for(sim), observer=observed, clock=fake_time.clock,
                          sleep=fake_time.sleep)
    async with client:
        yield client


@pytest.fixture
async def world(sim: BkCmdbSimulator, fake_time: FakeTime) -> AsyncIterator[World]:
    """A pusher for `api: kube` on `sim`, with in-memory tables and ledger."""
    async with BkCmdbClient(settings_for(sim, max_attempts=2), clock=fake_time.clock,
                            sleep=fake_time.sleep) as client:
        desired = MemoryDesiredState()
        ledger = MemoryLedger()
        yield World(sim=sim, client=client, desired=desired, ledger=ledger,
                    pusher=Pusher(client=client, desired=desired, ledger=ledger),
                    rows=Rows("c1", desired))


@pytest.fixture
async def pod_world(sim: BkCmdbSimulator, fake_time: FakeTime) -> AsyncIterator[World]:
    """The same, for `api: container`."""
    async with BkCmdbClient(settings_for(sim, api="container", max_attempts=2),
                            clock=fake_time.clock, sleep=fake_time.sleep) as client:
        desired = MemoryDesiredState()
        ledger = MemoryLedger()
        yield World(sim=sim, client=client, desired=desired, ledger=ledger,
                    pusher=Pusher(client=client, desired=desired, ledger=ledger),
                    rows=Rows("c1", desired))
