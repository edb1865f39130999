"""Helpers for the bk-cmdb tests: virtual time, a recording observer, a seeded topology."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from synchronizer.bkcmdb import BkCmdbSettings
from synchronizer.bkcmdb.simulator import BkCmdbSimulator

SECRET = "s3cret-Do-Not-Log-7f3a"
BIZ = 2
OTHER_BIZ = 3


@dataclass
class FakeTime:
    """A clock that only moves when the client sleeps; every chosen delay is recorded."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


@dataclass
class Observed:
    """A `RequestObserver` that keeps what it was told."""

    calls: list[tuple[str, str, float]] = field(default_factory=list)

    def __call__(self, endpoint: str, status: str, duration: float) -> None:
        self.calls.append((endpoint, status, duration))


def settings_for(sim: BkCmdbSimulator, **overrides: object) -> BkCmdbSettings:
    """Client settings matching the simulator's auth mode and credentials."""
    values: dict[str, object] = {
        "url": sim.base_url, "auth": sim.auth.mode, "app_code": sim.auth.app_code,
        "app_secret": sim.auth.app_secret, "username": "admin", "rate": 1000.0, "burst": 1000}
    values.update(overrides)
    return BkCmdbSettings(**values)  # type: ignore[arg-type]


def seed(sim: BkCmdbSimulator, hosts: int = 3) -> list[int]:
    """Business BIZ with the default module and `hosts` hosts 10.1.0.1…; one foreign host."""
    model = sim.model.hosts
    model.add_business(BIZ, "game")
    model.add_business(OTHER_BIZ, "other")
    model.add_module(BIZ, "bkbcs", "bkbcs")
    model.add_module(BIZ, "web", "nginx")
    made = [model.add_host(f"10.1.0.{i + 1}", biz_id=BIZ) for i in range(hosts)]
    model.add_host("10.9.0.1", biz_id=OTHER_BIZ)
    return made
