"""Opening one assigned cluster: its client, one source and reconciler per resource, and the
supervisor that holds its lease — the controller's factory.

Given an assignment (fence and spec), the cluster's spec is resolved into an endpoint (its
secrets looked up where they live), one `ClusterClient` is shared by all the cluster's
sources, and every resource of every kind the spec asks for (or `sync.kinds`) gets a
`KubeSource` and a `ClusterReconciler` writing into that kind's table. The supervisor
holds the cluster's lease for all of them. On exit the client is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime

from reconciler import (
    BatchedLeases,
    ClusterId,
    ClusterReconciler,
    ClusterSupervisor,
    Metrics,
    ReconcilerSettings,
    Writer,
    WriterSettings,
)

from .cmdb import CmdbStore
from .coordination import Assigned
from .heap import FullSyncSlots, Keeper
from .kinds import Kind, kinds
from .kube import ClusterClient, KubeSource
from .registries import ClusterSpec, SecretResolver, endpoint_of
from .settings import Settings

SpecLookup = Callable[[ClusterId], ClusterSpec | None]
"""A spec for a cluster the assignment carried none for (a master of an older version)."""


def reconciler_settings(settings: Settings) -> ReconcilerSettings:
    """The engine's knobs from the config file's `sync` section."""
    s = settings.sync
    return ReconcilerSettings(
        senders=s.senders, batch_size=s.batch_size, linger=s.linger,
        gate_capacity=s.gate_capacity, full_sync_interval=s.full_sync_interval,
        backoff_max=s.backoff_max, lease_ttl=s.lease_ttl,
    )


def writer_settings(settings: Settings) -> WriterSettings:
    """The instance writer's knobs from the config file's `sync` section."""
    s = settings.sync
    return WriterSettings(senders=s.senders, batch_size=s.batch_size, linger=s.linger,
                          budget=s.memory_budget, backoff_max=s.backoff_max)


INDEX_LOADS = 8
"""Full syncs whose index loads get a connection of their own; more running at once wait
a moment for one (an index load is one short query)."""


def pool_size(settings: Settings) -> int:
    """CMDB connections for one instance: every sender may hold one, concurrent full syncs
    one each for their index loads (up to `INDEX_LOADS`), and a few more for lease
    renewals and reads, so a renewal never waits behind bulk writes."""
    return (settings.sync.senders + min(settings.sync.max_concurrent_full_syncs, INDEX_LOADS)
            + 4)


def kinds_of(spec: ClusterSpec, settings: Settings) -> tuple[Kind, ...]:
    """The kinds a cluster syncs: its own list, else `sync.kinds`."""
    return kinds(spec.kinds if spec.kinds is not None else settings.sync.kinds)


class ClusterFactory:
    """Opens assigned clusters (the controller's `Factory`)."""

    def __init__(self, *, settings: Settings, store: Callable[[], CmdbStore],
                 secrets: SecretResolver, metrics: Metrics, clock: Callable[[], datetime],
                 fallback: SpecLookup, writer: Callable[[], Writer],
                 heap: Keeper | None = None) -> None:
        self._settings = settings
        self._writer = writer
        self.slots = FullSyncSlots(settings.sync.max_concurrent_full_syncs, heap)
        """Full syncs running at once, over every cluster of the instance; they tell
        `heap` (`heap.HeapKeeper`) when one ends and when the last one ends."""
        self._store = store
        self._secrets = secrets
        self._metrics = metrics
        self._clock = clock
        self._fallback = fallback
        self._engine = reconciler_settings(settings)
        self.specs: dict[ClusterId, ClusterSpec] = {}
        """The spec each open cluster runs with (for /status)."""
        self._leases: BatchedLeases | None = None

    def leases(self, store: CmdbStore) -> BatchedLeases:
        """The instance's leases over `store`: every cluster's renewals batched together."""
        if self._leases is None or self._leases.store is not store:
            self._leases = BatchedLeases(store)
        return self._leases

    @contextlib.asynccontextmanager
    async def __call__(self, cluster: ClusterId, assigned: Assigned
                       ) -> AsyncIterator[ClusterSupervisor]:
        spec = assigned.spec or self._fallback(cluster)
        if spec is None:
            raise LookupError(f"cluster {cluster} is assigned here but no registry describes"
                              " it")
        endpoint = await endpoint_of(spec, self._secrets)
        chosen = kinds_of(spec, self._settings)
        resources = [(kind, resource) for kind in chosen for resource in kind.resources]
        client = ClusterClient(endpoint, watches=len(resources))
        store = self._store()
        sync = self._settings.sync
        reconcilers = [
            ClusterReconciler(
                cluster=cluster, kind=resource.plural, settings=self._engine,
                metrics=self._metrics, fence=assigned.fence, clock=self._clock,
                store=store.table(kind, resource), writer=self._writer(),
                full_sync_slots=self.slots,
                source=KubeSource(
                    client, kind=kind, resource=resource, biz_id=spec.biz_id,
                    page_size=sync.page_size, watch_timeout=int(sync.watch_timeout),
                    inactivity=sync.watch_inactivity, decode_linger=sync.decode_linger,
                    clock=self._clock, metrics=self._metrics,
                ),
            )
            for kind, resource in resources
        ]
        self.specs[cluster] = spec
        try:
            yield ClusterSupervisor(cluster=cluster, reconcilers=reconcilers,
                                    leases=self.leases(store),
                                    fence=assigned.fence, settings=self._engine,
                                    metrics=self._metrics)
        finally:
            self.specs.pop(cluster, None)
            await client.aclose()


def table_kinds(spec: ClusterSpec | None, settings: Settings) -> Mapping[str, Kind]:
    """The kinds whose rows /status counts for a cluster."""
    chosen = kinds_of(spec, settings) if spec is not None else kinds(settings.sync.kinds)
    return {k.name: k for k in chosen}
