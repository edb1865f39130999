"""The registries' health as metrics, shown by the instance that reads them.

Only the master (or a standalone instance) reads the registries, so only it can say how
they answer. It exports `RegistryPull.health` after every pull, as a master's duty
(`setup`): clusters and held clusters per registry, whether its last read answered, when
one last did, reads by result, and the clusters declared twice. When the instance stands
down its gauges go: a deposed master's last counts beside the new master's would both
claim to be current. The read counters stay (history), and continue where they left off
if leadership comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .api import RegistryPull

GAUGES = ("registry_clusters", "registry_held_clusters", "registry_up",
          "registry_last_success_timestamp_seconds")


class GaugeSink(Protocol):
    """What of `PrometheusMetrics` the export needs."""

    def inc(self, name: str, labels: Mapping[str, str], n: float = 1) -> None: ...

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None: ...

    def remove(self, name: str, labels: Mapping[str, str]) -> None: ...


class RegistryMetrics:
    """Exports one `RegistryPull`'s health; `run` while master (see the module)."""

    def __init__(self, pull: RegistryPull, metrics: GaugeSink) -> None:
        self._pull = pull
        self._metrics = metrics
        self._counted: dict[str, tuple[int, int]] = {}
        """Per registry, (reads, failures) already added to the counters."""
        self._shown: set[str] = set()

    async def run(self) -> None:
        """Export now and after every pull, until cancelled; then drop the gauges."""
        try:
            while True:
                self.export()
                await self._pull.wait_pulled(self._pull.generation)
        finally:
            self.drop()

    def export(self) -> None:
        """Show the registries' health as it is now."""
        metrics = self._metrics
        for health in self._pull.health:
            labels = {"registry": health.origin}
            reads, failures = self._counted.get(health.origin, (0, 0))
            ok = (health.reads - health.failures) - (reads - failures)
            if ok > 0:
                metrics.inc("registry_reads_total", {**labels, "result": "ok"}, ok)
            if health.failures > failures:
                metrics.inc("registry_reads_total", {**labels, "result": "error"},
                            health.failures - failures)
            self._counted[health.origin] = (health.reads, health.failures)
            if not health.reads:
                continue  # not read yet (a standalone instance's first pull is under way)
            metrics.set("registry_clusters", labels, health.clusters)
            metrics.set("registry_held_clusters", labels, health.held)
            metrics.set("registry_up", labels, 0 if health.last_error else 1)
            if health.last_good is not None:
                metrics.set("registry_last_success_timestamp_seconds", labels,
                            health.last_good.timestamp())
            self._shown.add(health.origin)
        metrics.set("registry_conflicts", {}, len(self._pull.conflicts))

    def drop(self) -> None:
        """Remove the gauges (this instance no longer reads the registries)."""
        for origin in self._shown:
            for name in GAUGES:
                self._metrics.remove(name, {"registry": origin})
        self._shown.clear()
        self._metrics.remove("registry_conflicts", {})
