"""What the controller sees of coordination: values, the two protocols, the static registry.

Role: the vocabulary shared by `StandaloneCoordinator` and `ZooKeeperCoordinator` and
their consumers (the controller, /status, /readyz). A `Coordinator` hands out, level-
triggered, the full set of clusters this instance must run now, each with a `Fence`
(owner = instance id, epoch = monotonic per cluster); a `Registry` says which clusters
exist. Nothing here imports kazoo.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler import ClusterId, Fence

log = logging.getLogger(__name__)

STATES = ("standalone", "connecting", "connected", "suspended", "lost")
"""Values of `CoordinationStatus.state` (and of the `zk_session_state` gauge's label)."""


@dataclass(frozen=True, slots=True)
class Member:
    """How other instances and operators reach one instance; published in its member node."""

    id: str
    address: str
    port: int
    metric_port: int


@dataclass(frozen=True, slots=True)
class CoordinationStatus:
    """A snapshot for /status and /readyz.

    `assignments` (every cluster id -> instance id) and `moved_last` (clusters that changed
    owner in the last rebalance this instance published) are the master's; others see
    None and 0. `assignment_version` is the version of the assignment this instance acts
    on (None before it has read one).
    """

    state: str
    master: bool
    master_id: str | None
    members: tuple[str, ...]
    assignments: Mapping[str, str] | None
    assignment_version: int | None
    moved_last: int


class Registry(Protocol):
    """A source of cluster ids (static config, a custom resource, an HTTP registry)."""

    async def clusters(self) -> frozenset[str]:
        """Return every cluster id this registry knows now; raise when it cannot tell."""
        ...


class Coordinator(Protocol):
    """Decides which clusters this instance runs, and says so as a level-triggered stream."""

    async def start(self) -> None:
        """Begin coordinating; returns promptly (an unreachable ZooKeeper is retried)."""
        ...

    async def stop(self) -> None:
        """Stand down, give up every claim, and close the session (graceful)."""
        ...

    def owned(self) -> AsyncIterator[Mapping[ClusterId, Fence]]:
        """Yield the full owned set now and after every change (newest value only)."""
        ...

    def status(self) -> CoordinationStatus:
        """A snapshot of the coordination state for /status."""
        ...

    @property
    def ready(self) -> bool:
        """True once this instance has joined coordination (and while it stays joined)."""
        ...


class StaticRegistry:
    """The `clusters:` list of the config file: a fixed set, never failing."""

    def __init__(self, clusters: Iterable[str]) -> None:
        self._clusters = frozenset(clusters)

    async def clusters(self) -> frozenset[str]:
        """The configured cluster ids."""
        return self._clusters


class RegistryPull:
    """Merges several registries, keeping each one's last good answer.

    Why keep stale answers: a registry that fails for a moment must not make its clusters
    vanish (that would stop their reconcilers everywhere, then start them again).
    `complete` is False while some registry has never answered; the master then keeps
    the clusters of the current assignment instead of dropping them.
    """

    def __init__(self, registries: Sequence[Registry]) -> None:
        self._registries = tuple(registries)
        self._last: list[frozenset[str] | None] = [None] * len(self._registries)

    @property
    def complete(self) -> bool:
        """True once every registry has answered at least once."""
        return all(r is not None for r in self._last)

    async def pull(self) -> frozenset[str]:
        """Ask every registry; return the union of the latest good answers."""
        for i, registry in enumerate(self._registries):
            try:
                self._last[i] = frozenset(await registry.clusters())
            except Exception as exc:  # a registry is someone else's code: never fatal here
                log.warning("cluster registry %s failed, keeping its last answer: %s",
                            type(registry).__name__, exc)
        return self.merged()

    def merged(self) -> frozenset[str]:
        """The union of the latest good answers, without asking again."""
        out: set[str] = set()
        for clusters in self._last:
            if clusters is not None:
                out |= clusters
        return frozenset(out)
