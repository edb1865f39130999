"""The registry protocol, and the merge of several registries into one set of specs.

A `Registry` answers "which clusters exist, and how do I reach them" (`specs()`), or raises
when it cannot tell. `RegistryPull` asks each registry in turn and merges the answers:

- **Last good answer.** A registry that fails keeps its previous answer: an outage of the
  home API server or of the BCS cluster manager never removes a cluster (that would stop
  its reconcilers everywhere, then start them again). `complete` is False while some
  registry has never answered; the master then keeps the clusters of the current
  assignment instead of dropping them.
- **Fixed precedence, conflicts reported.** The same id from two registries is a mistake
  of configuration, not something to guess about: the registry earlier in
  `spec.PRECEDENCE` wins (static config, SyncCluster, BCS, topology), deterministically,
  so nothing flaps; the conflict is reported for that id (`conflicts`, shown in /status).
- **Health.** Per registry: when it last answered, how many clusters, its last error,
  reads and failures so far (the master exports them as metrics: `registries.metrics`).
- **Held clusters.** A spec with `hold` set is declared but must not run (a paused
  SyncCluster, a BCS cluster briefly not RUNNING): `merged()` leaves it out, so it is not
  assigned, while `declared` keeps it, so it is never mistaken for a removed cluster.
- **Kicks.** A registry that learns of a change (a SyncCluster event, a topology written)
  calls `kick()`; the coordinators' pull loops wait with `sleep(interval)`, which returns
  early on a kick, so a change is assigned in about a second rather than a pull interval.
  Every finished pull wakes `wait_pulled` (the master's duties follow the pulls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .spec import PRECEDENCE, ClusterSpec, Origin

log = logging.getLogger(__name__)


class Registry(Protocol):
    """A source of cluster specs (static config, a custom resource, an HTTP registry).

    A registry may also have `conflicts` (id → message): duplicates within itself, which
    it resolved deterministically and wants shown next to the cross-registry ones.
    """

    origin: Origin

    async def specs(self) -> Mapping[str, ClusterSpec]:
        """Every cluster this registry knows now, by id; raise when it cannot tell."""
        ...


@dataclass(slots=True)
class RegistryHealth:
    """What /status shows of one registry."""

    origin: str
    clusters: int = 0
    last_good: datetime | None = None
    last_error: str | None = None
    held: int = 0
    reads: int = 0
    """Reads of the registry so far, answered or not (metrics: `registries.metrics`)."""
    failures: int = 0
    """Reads that failed (the last good answer was kept)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"origin": self.origin, "clusters": self.clusters, "held": self.held,
                "last_good": self.last_good.isoformat() if self.last_good else None,
                "last_error": self.last_error}


class RegistryPull:
    """Merges several registries, keeping each one's last good answer (see the module)."""

    def __init__(self, registries: Sequence[Registry]) -> None:
        order = {origin: n for n, origin in enumerate(PRECEDENCE)}
        self._registries = tuple(sorted(registries, key=lambda r: order[r.origin]))
        self._last: list[Mapping[str, ClusterSpec] | None] = [None] * len(self._registries)
        self.health = [RegistryHealth(origin=str(r.origin)) for r in self._registries]
        self.conflicts: dict[str, str] = {}
        self.declared: dict[str, ClusterSpec] = {}
        """Every declared cluster of the latest merge, held ones included."""
        self.generation = 0
        """Pulls finished so far."""
        self.started = 0
        """Pulls started so far (pulls run one at a time: pull n+1 starts after n ends)."""
        self._kicked = asyncio.Event()
        self._pulled = asyncio.Event()

    @property
    def registries(self) -> tuple[Registry, ...]:
        """The registries, in precedence order."""
        return self._registries

    @property
    def held(self) -> dict[str, str]:
        """Declared clusters that must not run now: id → why."""
        return {c: s.hold for c, s in self.declared.items() if s.hold is not None}

    def kick(self) -> None:
        """Ask for a pull now (a registry saw a change); safe to call repeatedly."""
        self._kicked.set()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if someone kicks."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._kicked.wait()
        self._kicked.clear()

    async def wait_pulled(self, after: int) -> int:
        """Wait until more than `after` pulls have finished; return the generation."""
        while self.generation <= after:
            await self._pulled.wait()
        return self.generation

    @property
    def complete(self) -> bool:
        """True once every registry has answered at least once."""
        return all(r is not None for r in self._last)

    async def pull(self) -> dict[str, ClusterSpec]:
        """Ask every registry; return the merge of the latest good answers."""
        self.started += 1
        for i, registry in enumerate(self._registries):
            health = self.health[i]
            health.reads += 1
            try:
                answer = dict(await registry.specs())
            except Exception as exc:  # a registry is someone else's service: never fatal
                health.failures += 1
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if message != health.last_error:
                    log.warning("cluster registry %s failed, keeping its last answer: %s",
                                registry.origin, message)
                health.last_error = message
                continue
            self._last[i] = answer
            health.clusters = len(answer)
            health.held = sum(1 for spec in answer.values() if spec.hold is not None)
            health.last_good = datetime.now(UTC)
            health.last_error = None
        merged = self.merged()
        self.generation += 1
        self._pulled.set()
        self._pulled = asyncio.Event()
        return merged

    def merged(self) -> dict[str, ClusterSpec]:
        """The clusters to run: the merge of the latest good answers without the held
        ones, without asking again (`declared` keeps all of them)."""
        self.declared = self._merge()
        return {c: s for c, s in self.declared.items() if s.hold is None}

    def _merge(self) -> dict[str, ClusterSpec]:
        out: dict[str, ClusterSpec] = {}
        conflicts: dict[str, str] = {}
        for registry, answer in zip(self._registries, self._last, strict=True):
            for cluster_id, spec in (answer or {}).items():
                kept = out.get(cluster_id)
                if kept is None:
                    out[cluster_id] = spec
                elif kept.origin != spec.origin:
                    conflicts[cluster_id] = (
                        f"cluster {cluster_id} is declared by both {kept.origin} and"
                        f" {registry.origin}; using {kept.origin}")
        for registry in self._registries:  # a registry's own duplicates (two SyncClusters)
            for cluster_id, message in getattr(registry, "conflicts", {}).items():
                conflicts.setdefault(cluster_id, message)
        for cluster_id, message in conflicts.items():
            if self.conflicts.get(cluster_id) != message:
                log.error("%s", message)
        self.conflicts = conflicts
        return out


class StaticRegistry:
    """The `clusters:` list of the config file: a fixed set, never failing."""

    origin = Origin.STATIC

    def __init__(self, specs: Mapping[str, ClusterSpec]) -> None:
        self._specs = dict(specs)

    async def specs(self) -> Mapping[str, ClusterSpec]:
        """The configured clusters."""
        return self._specs
