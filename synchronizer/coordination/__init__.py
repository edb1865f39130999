"""Coordination: which instance runs which cluster, standalone or through ZooKeeper.

Role: decide, for this instance, the set of clusters it must reconcile now, each with a
`Fence` (owner = instance id, epoch = a per-cluster monotonic token); say so as a
level-triggered stream (`Coordinator.owned()`), and report state for /status and /metrics.
Inputs: cluster registries, and (ZooKeeper mode) the ensemble. Next stage: the controller
diffs the owned set against its running reconcilers; the store's lease table takes a
cluster over when a higher epoch arrives, which fences off a previous owner.

Modules, bottom-up (only `zk` and the recipes built on it import kazoo):
- `api`: `Member`, `CoordinationStatus`, `Assigned` (fence and spec of an owned cluster),
  and the `Coordinator` protocol (the registries live in `synchronizer.registries`).
- `latest`: `Latest`, a level-triggered value with waiters (the owned-set stream).
- `hashring`: pure `assign(clusters, members)` — consistent hashing, bounded loads.
- `zk`: the kazoo session bridged to asyncio; state stream; the stand-down timer.
- `membership`: ephemeral member nodes named by instance id; the member watch.
- `election`: kazoo's Lock recipe in a thread; `Leadership`, bound to its session.
- `assignment`: the versioned assignment znode; epochs; the master's fenced publish.
- `standalone`, `coordinator`: the two `Coordinator` implementations.

ZooKeeper layout under `root`: `members/<instance id>` (ephemeral, JSON address/ports),
`election/<uuid>__lock__<seq>` (ephemeral sequential), `assignment` (persistent JSON).
"""

from .api import (
    STATES,
    Assigned,
    CoordinationStatus,
    Coordinator,
    Member,
)
from .assignment import Assignment
from .coordinator import ZooKeeperCoordinator
from .hashring import assign
from .standalone import StandaloneCoordinator

__all__ = [
    "STATES",
    "Assigned",
    "Assignment",
    "CoordinationStatus",
    "Coordinator",
    "Member",
    "StandaloneCoordinator",
    "ZooKeeperCoordinator",
    "assign",
]
