"""Standalone coordination: one instance owns every cluster (no `zookeeper` in the config).

Role: the same `Coordinator` interface as the ZooKeeper one, so the controller cannot tell
the difference: it re-reads the registries every `pull_interval` and yields the merged set,
each cluster with its spec and fenced with `Fence(owner=instance_id, epoch=0)`. Epoch 0 is
below every ZooKeeper epoch (zxids start at 1), so if the deployment later moves to
ZooKeeper, the first ZooKeeper owner takes the store's leases over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from types import MappingProxyType

from reconciler import ClusterId, Fence, Metrics
from synchronizer.registries import ClusterSpec, Registry, RegistryPull

from .api import Assigned, CoordinationStatus, moved_registry
from .latest import Latest

log = logging.getLogger(__name__)


class StandaloneCoordinator:
    """Owns every cluster of the merged registries, with epoch 0."""

    def __init__(
        self,
        instance_id: str,
        registries: Sequence[Registry],
        pull_interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.pull = RegistryPull(registries)
        self._pull_interval = pull_interval
        self._metrics = metrics
        self._owned: Latest[Mapping[ClusterId, Assigned]] = Latest(MappingProxyType({}))
        self._task: asyncio.Task[None] | None = None
        self._master_flag: Latest[bool] = Latest(False)
        self._ready = False
        self._stopped = False

    @property
    def ready(self) -> bool:
        """True once the registries have been read."""
        return self._ready and not self._stopped

    async def start(self) -> None:
        """Read the registries once (so the first owned set is complete), then keep pulling."""
        if self._metrics is not None:
            self._metrics.set("is_master", {}, 1)
        await self._refresh()
        self._master_flag.set(True)
        self._task = asyncio.create_task(self._pull_loop(), name="standalone-pull")

    async def stop(self) -> None:
        """Stop pulling and own nothing."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._publish({})
        self._master_flag.set(False)
        if self._metrics is not None:
            self._metrics.set("is_master", {}, 0)

    def owned(self) -> AsyncIterator[Mapping[ClusterId, Assigned]]:
        """The full owned set now and after every change."""
        return self._owned.stream()

    @property
    def current(self) -> Mapping[ClusterId, Assigned]:
        """What this instance owns now (every cluster), with fence and spec."""
        return self._owned.value

    def leadership(self) -> AsyncIterator[bool]:
        """True from `start` to `stop`: a standalone instance is its own master."""
        return self._master_flag.stream()

    def status(self) -> CoordinationStatus:
        """Standalone: master of itself, owner of everything."""
        owned = self._owned.value
        return CoordinationStatus(
            state="standalone",
            master=not self._stopped,
            master_id=self.instance_id,
            members=(self.instance_id,),
            assignments={str(c): self.instance_id for c in sorted(owned)},
            assignment_version=self._owned.version,
            moved_last=0,
        )

    async def _pull_loop(self) -> None:
        while True:
            await self.pull.sleep(self._pull_interval)  # the period, or less on a kick
            await self._refresh()

    async def _refresh(self) -> None:
        clusters = await self.pull.pull()
        self._ready = True
        if not self._stopped:
            self._publish(clusters)

    def _publish(self, clusters: Mapping[str, ClusterSpec]) -> None:
        fence = Fence(owner=self.instance_id, epoch=0)
        fences = {ClusterId(c): Assigned(fence, clusters[c]) for c in sorted(clusters)}
        moved = moved_registry(self._owned.value, fences)  # equal, but must reach the controller
        if self._owned.set(MappingProxyType(fences), force=moved):
            log.info("standalone: owning %d clusters", len(fences))
            if self._metrics is not None:
                self._metrics.set("assigned_clusters", {}, len(fences))
