"""The composition root: one synchronizer instance, wired from its settings.

Builds the metrics registry, the HTTP server, the CMDB store (retried until reachable,
never fatal), the coordinator (standalone, or ZooKeeper when configured), and the
controller whose factory opens a Kubernetes source and a `ClusterReconciler` per owned
cluster. `run()` serves until the stop event, then shuts down in dependency order:
reconcilers first (senders flushed, leases released), then coordination (session closed,
so successors take over at once), then the store and the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from reconciler import ClusterId, ClusterReconciler, Fence, ReconcilerSettings
from reconciler._backoff import Backoff

from .cmdb import CmdbStore, open_store
from .controller import Controller
from .coordination import (
    Coordinator,
    Member,
    StandaloneCoordinator,
    StaticRegistry,
    ZooKeeperCoordinator,
)
from .http import HttpProviders, HttpServer
from .kube import ClusterEndpoint, KubePodSource
from .metrics import PrometheusMetrics
from .settings import ClusterSettings, Settings

log = logging.getLogger("synchronizer")

POD_COUNT_TTL = 2.0
"""Seconds a per-cluster row count is reused by /status and the `pods` gauge."""


def utcnow() -> datetime:
    """Wall clock for observation times."""
    return datetime.now(UTC)


def endpoint_of(spec: ClusterSettings) -> ClusterEndpoint:
    """Map a cluster's settings onto what the Kubernetes connection needs."""
    return ClusterEndpoint(
        id=spec.id,
        server=spec.server,
        token=spec.token.get_secret_value() if spec.token else None,
        ca_file=spec.ca_file,
        insecure=spec.insecure_skip_tls_verify,
        kubeconfig=spec.kubeconfig,
        context=spec.context,
    )


def reconciler_settings(settings: Settings) -> ReconcilerSettings:
    """The engine's knobs from the config file's `sync` section."""
    s = settings.sync
    return ReconcilerSettings(
        senders=s.senders, batch_size=s.batch_size, linger=s.linger,
        gate_capacity=s.gate_capacity, full_sync_interval=s.full_sync_interval,
        backoff_max=s.backoff_max, lease_ttl=s.lease_ttl,
    )


class Instance:
    """One synchronizer process; see the module docstring."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = PrometheusMetrics()
        self.specs = {ClusterId(c.id): c for c in settings.clusters}
        self.store: CmdbStore | None = None
        self.store_error: str | None = "not connected yet"
        self._store_ready = asyncio.Event()
        self._reconciler_settings = reconciler_settings(settings)
        self._pod_counts: dict[ClusterId, tuple[float, dict[str, int]]] = {}
        self.coordinator = self._coordinator()
        self.controller = Controller(factory=self._open_reconciler, metrics=self.metrics,
                                     backoff_max=settings.sync.backoff_max)
        inst = settings.instance
        self.http = HttpServer(
            address=inst.address, port=inst.port, metric_port=inst.metric_port,
            providers=HttpProviders(status=self.status, ready=self.readiness,
                                    metrics=self.metrics.exposition),
        )

    def _coordinator(self) -> Coordinator:
        registries = [StaticRegistry(self.specs)]
        pull = self.settings.sync.cluster_pull_interval
        zk = self.settings.zookeeper
        inst = self.settings.instance
        if zk is None:
            self.metrics.set("is_master", {}, 1)
            return StandaloneCoordinator(inst.id, registries, pull)
        member = Member(id=inst.id, address=inst.address, port=inst.port,
                        metric_port=inst.metric_port)
        return ZooKeeperCoordinator(
            inst.id, member, hosts=zk.hosts, root=zk.root,
            session_timeout=zk.session_timeout, registries=registries, pull_interval=pull,
            metrics=self.metrics,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then shut down gracefully."""
        await self.http.start()
        log.info("instance %s serving http on %s:%d, metrics on :%d (%s)",
                 self.settings.instance.id, self.settings.instance.address,
                 self.http.bound[0], self.http.bound[-1],
                 "standalone" if self.settings.zookeeper is None else "zookeeper")
        tasks = [asyncio.create_task(self._connect_store(), name="store"),
                 asyncio.create_task(self._work(), name="work"),
                 asyncio.create_task(self._refresh_counts(), name="counts")]
        try:
            await stop.wait()
        finally:
            log.info("stopping: reconcilers, then coordination, then the store")
            await self.controller.stop_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.coordinator.stop()
            if self.store is not None:
                await self.store.close()
            await self.http.stop()
            log.info("stopped")

    async def _connect_store(self) -> None:
        backoff = Backoff(0.5, self.settings.sync.backoff_max)
        dsn = self.settings.cmdb.dsn.get_secret_value()
        while True:
            try:
                self.store = await open_store(dsn)
            except Exception as exc:  # retried forever: an unreachable CMDB is not fatal
                self.store_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("cmdb unreachable, retrying: %s", self.store_error)
                await backoff.sleep()
                continue
            self.store_error = None
            self._store_ready.set()
            log.info("cmdb connected (%s)", type(self.store).__name__)
            return

    async def _work(self) -> None:
        await self._store_ready.wait()
        await self.coordinator.start()
        await self.controller.run(self.coordinator.owned())

    @contextlib.asynccontextmanager
    async def _open_reconciler(self, cluster: ClusterId, fence: Fence
                               ) -> AsyncIterator[ClusterReconciler]:
        spec = self.specs.get(cluster)
        if spec is None:
            raise LookupError(f"cluster {cluster} is assigned here but not configured")
        assert self.store is not None
        sync = self.settings.sync
        source = KubePodSource(
            endpoint_of(spec), cluster_id=cluster, biz_id=spec.biz_id,
            page_size=sync.page_size, watch_timeout=int(sync.watch_timeout),
            inactivity=sync.watch_inactivity, clock=self.clock, metrics=self.metrics,
        )
        try:
            yield ClusterReconciler(
                cluster=cluster, source=source, store=self.store,
                settings=self._reconciler_settings, metrics=self.metrics, leases=self.store,
                fence=fence, clock=self.clock,
            )
        finally:
            await source.aclose()

    # -- surfaces -------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """Ready once the CMDB is reachable and coordination is joined."""
        if self.store_error is not None:
            return False, f"cmdb: {self.store_error}"
        if not self.coordinator.ready:
            return False, f"coordination: {self.coordinator.status().state}"
        return True, "ready"

    async def pod_counts(self, cluster: ClusterId) -> dict[str, int]:
        """Rows of `cluster` by state, cached briefly so /status stays cheap."""
        now = asyncio.get_running_loop().time()
        cached = self._pod_counts.get(cluster)
        if cached is not None and now - cached[0] < POD_COUNT_TTL:
            return cached[1]
        counts: dict[str, int] = {}
        if self.store is not None:
            with contextlib.suppress(Exception):
                counts = await self.store.count_by_state(cluster)
        self._pod_counts[cluster] = (now, counts)
        return counts

    async def _refresh_counts(self) -> None:
        while True:
            for cluster in list(self.controller.clusters):
                counts = await self.pod_counts(cluster)
                for state in ("Active", "Deleted"):
                    self.metrics.set("pods", {"cluster": cluster, "state": state},
                                     counts.get(state, 0))
            await asyncio.sleep(10)

    async def status(self) -> dict[str, Any]:
        """The /status document (no secrets: the DSN and tokens never appear)."""
        coord = self.coordinator.status()
        loop_now = asyncio.get_running_loop().time()
        clusters = []
        for cluster, running in sorted(self.controller.clusters.items()):
            rec = running.reconciler
            counts = await self.pod_counts(cluster)
            st = rec.status if rec is not None else None
            clusters.append({
                "id": cluster,
                "state": str(st.phase) if st else ("backoff" if running.error else "starting"),
                "last_full_sync": st.last_full_sync.isoformat() if st and st.last_full_sync
                else None,
                "last_full_sync_seconds": st.last_full_sync_seconds if st else None,
                "full_syncs": st.full_syncs if st else 0,
                "pods": counts.get("Active", 0),
                "deleted": counts.get("Deleted", 0),
                "events": st.events if st else 0,
                "events_per_second": st.rate.rate(loop_now) if st else 0.0,
                "parked": rec.parked if rec else 0,
                "queued": rec.queued if rec else 0,
                "resume_version": st.resume_version if st else None,
                "epoch": running.fence.epoch,
                "restarts": running.restarts,
                "last_error": (st.last_error if st and st.last_error else running.error),
            })
        ready, reason = self.readiness()
        doc: dict[str, Any] = {
            "instance": self.settings.instance.id,
            "master": coord.master,
            "master_id": coord.master_id,
            "members": list(coord.members),
            "coordination": coord.state,
            "ready": ready,
            "reason": reason,
            "cmdb": type(self.store).__name__ if self.store else None,
            "clusters": clusters,
        }
        if coord.master and coord.assignments is not None:
            doc["assignments"] = dict(coord.assignments)
            doc["assignment_version"] = coord.assignment_version
            doc["moved_last"] = coord.moved_last
        return doc
