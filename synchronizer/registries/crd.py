"""The SyncCluster registry: the clusters the home cluster's SyncCluster resources declare.

Level-triggered on purpose. `specs()` lists the SyncClusters (one paged, consistent list)
each time the master pulls, and answers from that list alone; the kopf operator
(`crd_operator`) watches the same resources and only *kicks* the pull when something
changes, so a new SyncCluster is assigned within a second instead of a pull interval. Why
not answer from the operator's cache: kopf exposes no "initial listing is complete"
signal, and a master that answered from a half-filled cache after a fail-over would stop
every cluster it had not seen yet; a list is the truth at its version, costs one request
per pull, and an unreachable home cluster simply keeps the last good answer
(`RegistryPull`).

What a listed SyncCluster becomes (`synccluster.spec_of`): a running spec, or a held one
(paused, or a spec that cannot be used), or - while it is being deleted - nothing at all,
so its cluster leaves the registry and is stopped; the operator's finalizer holds the
resource until that has happened. Two SyncClusters naming the same cluster id: the older
one (creation time, then namespace/name) wins, deterministically, and the other is
reported as a conflict for that id.

`objects` keeps the latest list for the status writer (`crd_status`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .home import HomeCluster
from .spec import ClusterSpec, Origin
from .synccluster import deleting, source_of, spec_of


def _age(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), source_of(obj)


class CrdRegistry:
    """SyncCluster resources in the home cluster, as cluster specs."""

    origin = Origin.CRD

    def __init__(self, home: HomeCluster, namespace: str = "") -> None:
        self.home = home
        self.namespace = namespace
        self.objects: tuple[dict[str, Any], ...] = ()
        """The SyncClusters of the latest good list (deleting ones included)."""
        self.conflicts: dict[str, str] = {}
        self.listed = 0
        """Good lists so far (the status writer waits for the first)."""
        self.on_list: Callable[[], None] | None = None

    async def specs(self) -> Mapping[str, ClusterSpec]:
        """List the SyncClusters now; their specs by cluster id (see the module)."""
        items = await self.home.list_sync_clusters(self.namespace)
        out: dict[str, ClusterSpec] = {}
        winners: dict[str, str] = {}
        conflicts: dict[str, str] = {}
        for obj in sorted(items, key=_age):
            if deleting(obj):
                continue
            spec = spec_of(obj)
            if spec.id in out:
                conflicts[spec.id] = (
                    f"cluster {spec.id} is declared by SyncClusters {winners[spec.id]} and"
                    f" {spec.source}; using {winners[spec.id]}")
                continue
            out[spec.id] = spec
            winners[spec.id] = spec.source
        self.objects = tuple(items)
        self.conflicts = conflicts
        self.listed += 1
        if self.on_list is not None:
            self.on_list()
        return out
