"""The registries' health as metrics (`registries.metrics`): what the master shows after
each pull, counters that carry on across leaderships, gauges dropped on stand-down."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from synchronizer.metrics import PrometheusMetrics
from synchronizer.registries import ClusterSpec, Origin, RegistryPull
from synchronizer.registries.api import StaticRegistry
from synchronizer.registries.metrics import RegistryMetrics


class Flaky:
    """A BCS-like registry the test edits and can make fail."""

    origin = Origin.HTTP

    def __init__(self, *ids: str, held: str = "") -> None:
        self.ids = list(ids)
        self.held = held
        self.failing = False

    async def specs(self) -> Mapping[str, ClusterSpec]:
        if self.failing:
            raise RuntimeError("GET https://bcs/clusters: 502 Bad Gateway")
        return {c: ClusterSpec(id=c, origin=self.origin, server=f"https://bcs/{c}",
                               hold="not RUNNING" if c == self.held else None)
                for c in self.ids}


class Hooked(PrometheusMetrics):
    """Tells the test each time an export ends (its last gauge is the conflicts)."""

    def __init__(self) -> None:
        super().__init__()
        self.exports = 0
        self.changed = asyncio.Event()

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        super().set(name, labels, value)
        if name == "registry_conflicts":
            self.exports += 1
            self.changed.set()

    async def exported(self, count: int) -> None:
        """Return once `count` exports have ended."""
        async with asyncio.timeout(10):
            while self.exports < count:
                self.changed.clear()
                await self.changed.wait()


def series(metrics: PrometheusMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry families, as Prometheus would read the page."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.startswith("bkcmdb_sync_registry_"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (f"bkcmdb_sync_{name}", tuple(sorted(labels.items())))


async def test_each_registry_is_shown_after_each_pull_and_a_failure_keeps_its_counts() -> None:
    bcs = Flaky("b1", "b2", "shared", held="b2")
    static = StaticRegistry({c: ClusterSpec(id=c, server=f"http://{c}") for c in ("shared",)})
    pull = RegistryPull([bcs, static])
    metrics = Hooked()
    task = asyncio.create_task(RegistryMetrics(pull, metrics).run())
    try:
        await metrics.exported(1)  # at once: nothing read yet, nothing shown but conflicts
        assert set(series(metrics)) == {key("registry_conflicts")}
        await pull.pull()
        await metrics.exported(2)
        shown = series(metrics)
        assert shown[key("registry_clusters", registry="http")] == 3
        assert shown[key("registry_held_clusters", registry="http")] == 1
        assert shown[key("registry_clusters", registry="static")] == 1
        assert shown[key("registry_up", registry="http")] == 1
        assert shown[key("registry_reads_total", registry="http", result="ok")] == 1
        assert shown[key("registry_conflicts")] == 1  # "shared": static wins, reported
        good = shown[key("registry_last_success_timestamp_seconds", registry="http")]
        assert good == pull.health[1].last_good.timestamp()  # type: ignore[union-attr]

        bcs.failing = True
        generation = pull.generation
        await pull.pull()
        await pull.pull()
        assert pull.generation == generation + 2
        # These registries answer without yielding to the loop, so both pulls end before
        # the exporter wakes: one export shows both.
        await metrics.exported(3)
        shown = series(metrics)
        assert shown[key("registry_reads_total", registry="http", result="error")] == 2
        assert shown[key("registry_up", registry="http")] == 0
        assert shown[key("registry_clusters", registry="http")] == 3  # its last good answer
        assert shown[key("registry_last_success_timestamp_seconds", registry="http")] == good
        assert shown[key("registry_reads_total", registry="http", result="ok")] == 1
        assert shown[key("registry_reads_total", registry="static", result="ok")] == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(series(metrics)) == {  # stood down: the gauges are gone, the counters stay
        key("registry_reads_total", registry="http", result="ok"),
        key("registry_reads_total", registry="http", result="error"),
        key("registry_reads_total", registry="static", result="ok")}


async def test_standing_down_drops_the_gauges_and_the_counters_carry_on() -> None:
    bcs = Flaky("b1")
    pull = RegistryPull([bcs])
    metrics = PrometheusMetrics()
    exported = RegistryMetrics(pull, metrics)
    await pull.pull()
    exported.export()
    assert series(metrics)[key("registry_up", registry="http")] == 1
    exported.drop()  # as at the end of `run`, when the master's duties are cancelled
    assert set(series(metrics)) == {key("registry_reads_total", registry="http", result="ok")}
    await pull.pull()  # a pull while another instance is master is not counted twice
    await pull.pull()
    exported.export()  # master again
    shown = series(metrics)
    assert shown[key("registry_reads_total", registry="http", result="ok")] == 3
    assert shown[key("registry_up", registry="http")] == 1


async def test_nothing_is_shown_of_a_registry_not_read_yet() -> None:
    pull = RegistryPull([Flaky("b1")])
    metrics = PrometheusMetrics()
    RegistryMetrics(pull, metrics).export()
    assert series(metrics) == {key("registry_conflicts"): 0}
