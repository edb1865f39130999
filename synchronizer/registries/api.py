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
- **Health.** Per registry: when it last answered, how many clusters, its last error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .spec import PRECEDENCE, ClusterSpec, Origin

log = logging.getLogger(__name__)


class Registry(Protocol):
    """A source of cluster specs (static config, a custom resource, an HTTP registry)."""

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

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"origin": self.origin, "clusters": self.clusters,
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

    @property
    def complete(self) -> bool:
        """True once every registry has answered at least once."""
        return all(r is not None for r in self._last)

    async def pull(self) -> dict[str, ClusterSpec]:
        """Ask every registry; return the merge of the latest good answers."""
        for i, registry in enumerate(self._registries):
            health = self.health[i]
            try:
                answer = dict(await registry.specs())
            except Exception as exc:  # a registry is someone else's service: never fatal
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if message != health.last_error:
                    log.warning("cluster registry %s failed, keeping its last answer: %s",
                                registry.origin, message)
                health.last_error = message
                continue
            self._last[i] = answer
            health.clusters = len(answer)
            health.last_good = datetime.now(UTC)
            health.last_error = None
        return self.merged()

    def merged(self) -> dict[str, ClusterSpec]:
        """The merge of the latest good answers, without asking again."""
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
