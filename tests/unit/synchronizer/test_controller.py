"""The controller: running set = owned set; stops before starts; failed starts retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from reconciler import (
    ClusterId,
    ClusterReconciler,
    ClusterSupervisor,
    Fence,
    NullMetrics,
    ReconcilerSettings,
)
from reconciler.testing import MemorySource, MemoryStore
from synchronizer.controller import Controller
from synchronizer.coordination import Assigned
from synchronizer.registries import ClusterSpec

FAST = ReconcilerSettings(linger=0, backoff_initial=0.001, backoff_max=0.01)


class Recorder(NullMetrics):
    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def inc(self, name: str, labels: object, n: float = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


class World:
    """Sources per cluster, one store, and a factory that can be told to fail."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.sources: dict[str, MemorySource] = {}
        self.failures: dict[str, int] = {}
        self.events: list[str] = []

    @contextlib.asynccontextmanager
    async def factory(self, cluster: ClusterId, assigned: Assigned
                      ) -> AsyncIterator[ClusterSupervisor]:
        if self.failures.get(cluster, 0) > 0:
            self.failures[cluster] -= 1
            raise ConnectionError(f"cannot reach {cluster}")
        source = self.sources.setdefault(cluster, MemorySource())
        fence = assigned.fence
        tag = f"{cluster}@{fence.epoch}" + (f"/{assigned.spec.server}" if assigned.spec else "")
        self.events.append(f"start {tag}")
        try:
            rec = ClusterReconciler(cluster=cluster, source=source, store=self.store,
                                    settings=FAST, fence=fence)
            yield ClusterSupervisor(cluster=cluster, reconcilers=[rec], leases=self.store,
                                    fence=fence, settings=FAST)
        finally:
            self.events.append(f"stop {tag}")


async def synced(controller: Controller, cluster: str) -> None:
    async with asyncio.timeout(10):
        rec = await controller.wait_running(ClusterId(cluster))
        await rec.wait_synced()


def fences(*pairs: tuple[str, int]) -> dict[ClusterId, Assigned]:
    return {ClusterId(c): Assigned(Fence(owner="me", epoch=e)) for c, e in pairs}


async def test_running_set_follows_owned_set_and_stops_come_first() -> None:
    world = World()
    controller = Controller(factory=world.factory, metrics=Recorder())
    await controller.converge(fences(("a", 1), ("b", 1)))
    await synced(controller, "a")
    await synced(controller, "b")
    await controller.converge(fences(("b", 1), ("c", 1)))
    await synced(controller, "c")
    assert world.events.index("stop a@1") < world.events.index("start c@1")
    assert set(controller.clusters) == {"b", "c"}
    await controller.converge(fences(("b", 2), ("c", 1)))  # new epoch: restart under it
    await synced(controller, "b")
    assert world.events[-2:] == ["stop b@1", "start b@2"]
    await controller.stop_all()
    assert not controller.clusters
    assert all(world.store.holder(c) is None for c in world.store.leases)  # all given up


async def test_a_changed_spec_restarts_the_cluster_under_it() -> None:
    world = World()
    controller = Controller(factory=world.factory, metrics=Recorder())
    fence = Fence(owner="me", epoch=1)
    one = ClusterSpec(id="a", server="http://one")
    await controller.converge({ClusterId("a"): Assigned(fence, one)})
    await synced(controller, "a")
    await controller.converge({ClusterId("a"): Assigned(fence, one)})  # same: nothing
    assert world.events == ["start a@1/http://one"]
    two = ClusterSpec(id="a", server="http://two")
    await controller.converge({ClusterId("a"): Assigned(fence, two)})
    await synced(controller, "a")
    assert world.events == ["start a@1/http://one", "stop a@1/http://one",
                            "start a@1/http://two"]
    await controller.stop_all()


async def test_a_failed_start_is_retried_with_backoff_until_it_works() -> None:
    world = World()
    world.failures["a"] = 3
    metrics = Recorder()
    controller = Controller(factory=world.factory, metrics=metrics, backoff_initial=0.001,
                            backoff_max=0.005)
    await controller.converge(fences(("a", 1)))
    await synced(controller, "a")
    assert metrics.counts["reconciler_restarts_total"] == 3
    assert controller.clusters[ClusterId("a")].restarts == 3
    await controller.stop_all()


async def test_stopping_a_cluster_that_never_started_is_prompt() -> None:
    world = World()
    world.failures["a"] = 10**6
    controller = Controller(factory=world.factory, metrics=Recorder(), backoff_initial=5,
                            backoff_max=5)
    await controller.converge(fences(("a", 1)))
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await controller.converge({})
    assert not controller.clusters
