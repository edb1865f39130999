"""What the controller sees of coordination: values, the two protocols, the static registry.

Role: the vocabulary shared by `StandaloneCoordinator` and `ZooKeeperCoordinator` and
their consumers (the controller, /status, /readyz). A `Coordinator` hands out, level-
triggered, the full set of clusters this instance must run now, each `Assigned` with a
`Fence` (owner = instance id, epoch = monotonic per cluster) and the cluster's spec; the
registries (`synchronizer.registries`) say which clusters exist. Nothing here imports
kazoo.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from reconciler import ClusterId, Fence
from synchronizer.registries.spec import ClusterSpec

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


@dataclass(frozen=True, slots=True)
class Assigned:
    """One cluster this instance must run: the fence it writes under, and its spec.

    `spec` is what the master published with the assignment; None when the assignment
    carried none (a master of an older version), in which case the member looks the
    cluster up in its own static config.
    """

    fence: Fence
    spec: ClusterSpec | None = None


def moved_registry(old: Mapping[ClusterId, Assigned], new: Mapping[ClusterId, Assigned]
                   ) -> bool:
    """True when a cluster kept its fence and connection but now comes from another
    registry (or another resource of one): equal as `Assigned` (`ClusterSpec` equality
    ignores where a spec came from), yet the controller must be told, so that /status
    and the registries see the new origin - without a restart."""
    for cluster, assigned in new.items():
        before = old.get(cluster)
        if assigned.spec is not None and before is not None and before.spec is not None \
                and (assigned.spec.origin, assigned.spec.source) != (
                    before.spec.origin, before.spec.source):
            return True
    return False


class Coordinator(Protocol):
    """Decides which clusters this instance runs, and says so as a level-triggered stream."""

    async def start(self) -> None:
        """Begin coordinating; returns promptly (an unreachable ZooKeeper is retried)."""
        ...

    async def stop(self) -> None:
        """Stand down, give up every claim, and close the session (graceful)."""
        ...

    def owned(self) -> AsyncIterator[Mapping[ClusterId, Assigned]]:
        """Yield the full owned set now and after every change (newest value only)."""
        ...

    def status(self) -> CoordinationStatus:
        """A snapshot of the coordination state for /status."""
        ...

    @property
    def ready(self) -> bool:
        """True once this instance has joined coordination (and while it stays joined)."""
        ...
