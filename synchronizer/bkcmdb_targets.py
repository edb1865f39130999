"""Which clusters this instance pushes to bk-cmdb: the ones it owns, and removed ones to empty.

The task runner asks, whenever it looks for work, for the clusters it may push right now
(`PushTargets.__call__`, a plain function: the runner calls it often). Most are simply the
clusters this instance owns — assigned to it and opened by the controller — with the
business their spec names.

The hard case is a cluster that leaves every registry. Its objects must be deleted from
bk-cmdb (CONTRACT: "A pod, workload, node or namespace that is Deleted in the tables is
deleted there"; a removed cluster is emptied, then deleted), but nobody owns it any more,
and a cluster that merely *moved* to another instance leaves this one's owned set in
exactly the same way. Only one party sees the whole fleet: the master (standalone: the
one instance), whose assignment names every cluster that exists. So removal is decided
there, level-triggered, from durable facts:

    removed = clusters with a push task, minus the clusters in the master's assignment

and only while the master's view is complete (every registry answered at least once: an
unreachable registry must never empty a live cluster in bk-cmdb). A removed cluster is
returned with `removed=True` until its push reports `finished` — the runner then drops its
task, so the next refresh no longer sees it. Its business comes from what this process saw
while it was owned, else from the ledger (the cluster's entry hangs under its business); a
cluster with neither has nothing recorded in bk-cmdb, and its task is simply dropped.

If mastership moves, the new master finds the same tasks and finishes the job; the task's
claim keeps two instances from emptying one cluster at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from synchronizer.bkcmdb.pusher import PUSH_JOB, ClusterTarget, Ledger

log = logging.getLogger("synchronizer.bkcmdb.targets")

Owned = Callable[[], Mapping[str, int]]
"""The clusters this instance owns now → their business ids."""
Fleet = Callable[[], Collection[str] | None]
"""Every cluster that exists, when this instance is the master with a complete view; None
otherwise (then nothing is judged removed)."""


class TaskClusters(Protocol):
    """The part of the task board removal needs."""

    async def clusters(self, job: str) -> list[str]:
        """Every cluster with a task of `job`."""
        ...

    async def drop(self, cluster: str, job: str) -> None:
        """Remove the task."""
        ...


class PushTargets:
    """The runner's `targets`: owned clusters, plus removed clusters until emptied."""

    def __init__(self, *, owned: Owned, fleet: Fleet, tasks: TaskClusters, ledger: Ledger,
                 job: str = PUSH_JOB) -> None:
        self._owned = owned
        self._fleet = fleet
        self._tasks = tasks
        self._ledger = ledger
        self._job = job
        self._seen_biz: dict[str, int] = {}
        self.removed: dict[str, int] = {}
        """Removed clusters being emptied → the business they were in."""

    def __call__(self) -> dict[str, ClusterTarget]:
        """The clusters to push now (see the module docstring)."""
        owned = dict(self._owned())
        self._seen_biz.update(owned)
        targets = {c: ClusterTarget(id=c, biz_id=biz) for c, biz in owned.items()}
        for cluster, biz in self.removed.items():
            if cluster not in targets:
                targets[cluster] = ClusterTarget(id=cluster, biz_id=biz, removed=True)
        return targets

    async def refresh(self) -> None:
        """Recompute the removed clusters from the task table and the master's view."""
        fleet = self._fleet()
        if fleet is None:
            if self.removed:
                log.info("no complete view of the fleet here: leaving %d removed cluster(s)"
                         " to the master", len(self.removed))
            self.removed = {}
            return
        owned = self._owned()
        gone = [c for c in await self._tasks.clusters(self._job)
                if c not in fleet and c not in owned]
        removed: dict[str, int] = {}
        for cluster in gone:
            biz = self.removed.get(cluster)
            if biz is None:
                biz = self._seen_biz.get(cluster)
            if biz is None:
                biz = await self._ledger_biz(cluster)
            if biz is None:
                log.info("cluster %s: removed, and nothing of it recorded in bk-cmdb; dropping"
                         " its push task", cluster)
                await self._tasks.drop(cluster, self._job)
                continue
            if cluster not in self.removed:
                log.info("cluster %s: removed from every registry; emptying it in bk-cmdb"
                         " (business %d)", cluster, biz)
            removed[cluster] = biz
        self.removed = removed

    def forget(self, cluster: str) -> None:
        """The runner stopped pushing `cluster` (a removed one: emptied, its task dropped)."""
        self.removed.pop(cluster, None)

    async def _ledger_biz(self, cluster: str) -> int | None:
        for entry in await self._ledger.entries(cluster):
            biz = entry.parent("biz")
            if biz:
                return biz
        return None

    def status(self) -> dict[str, Any]:
        """What `/status` shows of it."""
        return {"removing": sorted(self.removed)}
