"""StandaloneCoordinator, RegistryPull and Latest: no ZooKeeper involved."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from coord_support import Changes, guard

from reconciler import ClusterId, Fence
from synchronizer.coordination import StandaloneCoordinator
from synchronizer.coordination.latest import Latest
from synchronizer.registries import ClusterSpec, Origin, RegistryPull, StaticRegistry


def static(*ids: str) -> StaticRegistry:
    return StaticRegistry({c: ClusterSpec(id=c, server=f"http://{c}") for c in ids})


class MutableRegistry:
    """A registry the test edits; it can be told to fail."""

    def __init__(self, *clusters: str, origin: Origin = Origin.CRD) -> None:
        self.ids = set(clusters)
        self.origin = origin
        self.failing = False
        self.asked = asyncio.Event()

    async def specs(self) -> dict[str, ClusterSpec]:
        self.asked.set()
        if self.failing:
            raise RuntimeError("registry down")
        return {c: ClusterSpec(id=c, origin=self.origin, server=f"http://{self.origin}/{c}")
                for c in self.ids}


class RecordingMetrics:
    """The engine's Metrics protocol, remembering the last gauge values and counters."""

    def __init__(self) -> None:
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.counters: dict[str, float] = {}

    def inc(self, name: str, labels: Mapping[str, str], n: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        pass

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.gauges[(name, tuple(sorted(labels.items())))] = value


async def test_latest_is_level_triggered_and_coalescing() -> None:
    value = Latest(0)
    stream = value.stream()
    assert await anext(stream) == 0
    for i in range(1, 6):
        value.set(i)
    assert await anext(stream) == 5  # intermediate values are skipped, never replayed
    assert value.set(5) is False  # an equal value is not a change
    waiter = asyncio.create_task(value.wait_for(lambda v: v >= 7))
    value.set(6)
    value.set(7)
    assert await guard(waiter) == 7


async def test_standalone_owns_every_cluster_with_epoch_zero(changes: Changes) -> None:
    dynamic = MutableRegistry("c")
    metrics = RecordingMetrics()
    coord = StandaloneCoordinator("solo", [static("a", "b"), dynamic],
                                  pull_interval=0.05, metrics=metrics)
    await coord.start()
    try:
        assert coord.ready
        changes.follow("owned", coord.owned())
        await changes.until(lambda: set(changes.latest.get("owned", {})) == {"a", "b", "c"})
        owned = changes.latest["owned"]
        assert owned[ClusterId("a")].fence == Fence(owner="solo", epoch=0)
        assert owned[ClusterId("c")].spec.origin == "crd"
        status = coord.status()
        assert (status.state, status.master, status.master_id) == ("standalone", True, "solo")
        assert status.assignments == {"a": "solo", "b": "solo", "c": "solo"}
        assert metrics.gauges[("is_master", ())] == 1
        assert metrics.gauges[("assigned_clusters", ())] == 3

        dynamic.ids = {"c", "d"}  # picked up by the next pull
        await changes.until(lambda: set(changes.latest["owned"]) == {"a", "b", "c", "d"})

        dynamic.failing = True  # a failing registry keeps its last answer
        for _ in range(2):  # two failed pulls: the first one's outcome has been applied
            dynamic.asked.clear()
            await guard(dynamic.asked.wait())
        assert set(coord.status().assignments or {}) == {"a", "b", "c", "d"}
    finally:
        await coord.stop()
    await changes.until(lambda: changes.latest["owned"] == {})
    assert not coord.ready
    assert metrics.gauges[("is_master", ())] == 0


async def test_registry_pull_is_incomplete_until_every_registry_answered() -> None:
    broken = MutableRegistry("x")
    broken.failing = True
    pull = RegistryPull([static("a"), broken])
    assert set(await pull.pull()) == {"a"}
    assert not pull.complete
    assert pull.health[1].last_error == "registry down"
    broken.failing = False
    assert set(await pull.pull()) == {"a", "x"}
    assert pull.complete
    assert pull.health[1].last_error is None and pull.health[1].clusters == 1


async def test_the_same_id_from_two_registries_is_reported_and_precedence_decides() -> None:
    http = MutableRegistry("shared", "only-http", origin=Origin.HTTP)
    crd = MutableRegistry("shared", origin=Origin.CRD)
    pull = RegistryPull([http, static("a"), crd])  # given in any order
    for _ in range(3):  # deterministic: no flapping between pulls
        merged = await pull.pull()
        assert merged["shared"].origin == Origin.CRD
        assert set(merged) == {"a", "shared", "only-http"}
        assert set(pull.conflicts) == {"shared"}
        assert "crd" in pull.conflicts["shared"] and "http" in pull.conflicts["shared"]
    crd.ids.clear()
    assert (await pull.pull())["shared"].origin == Origin.HTTP
    assert pull.conflicts == {}
