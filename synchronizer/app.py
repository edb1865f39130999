"""The composition root: one synchronizer instance, wired from its settings.

Builds the metrics registry, the HTTP server, the CMDB store (retried until reachable,
never fatal), the registries and the coordinator (standalone, or ZooKeeper when
configured), and the controller whose factory (`clusters.ClusterFactory`) opens a
supervisor per owned cluster. `run()` serves until the stop event, then shuts down in
dependency order: clusters first (senders flushed, leases given up), then coordination
(session closed, so successors take over at once), then the store and the HTTP server.

Background parts run supervised: a part that fails is logged with its reason and started
again with backoff, its failure shown by /readyz and /status, so nothing dies silently
behind a `/healthz` that still says ok.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from reconciler import ClusterId, Writer
from reconciler._backoff import Backoff

from . import bkcmdb_service
from .clusters import ClusterFactory, pool_size, table_kinds, writer_settings
from .cmdb import CmdbStore, open_store
from .cmdb.api import Groups, TombstoneRetention
from .controller import Controller
from .coordination import Coordinator, Member, StandaloneCoordinator, ZooKeeperCoordinator
from .heap import HeapKeeper
from .http import HttpProviders, HttpServer
from .kinds import PODS, Kind
from .metrics import PrometheusMetrics
from .registries import ClusterSpec, Registry, RegistryPull, SecretResolver
from .registries.setup import RegistrySetup
from .registries.static import spec_of, static_registry, static_tokens
from .settings import Settings
from .status import RowCounts, cluster_state, iso, kind_detail, last_full_sync, totals

log = logging.getLogger("synchronizer")

COUNT_INTERVAL = 30.0
"""Seconds between refreshes of the `rows` gauge (of the clusters written to since; a
fleet's churn touches most clusters, and counting them every 10 s was 5 % of a quiet
fleet's CPU). /status counts on demand (`status.COUNT_TTL`)."""
COUNT_MAX_AGE = 300.0
"""Seconds after which a cluster's rows are counted again even if nothing was written."""
RETENTION_EVERY = 600.0
"""Seconds between two passes of tombstone retention (when `sync.tombstone_retention`)."""
RETENTION_CHUNK = 5000
"""Tombstones deleted per statement: short transactions that never hold a table long."""
WRITE_FAILURE_GRACE = 3.0
"""Seconds writes may keep failing (a deadlock retried, a failover) before /readyz says the
CMDB is unusable (TEST-MATRIX row 29: read-only, disk full, refusing every write)."""


def utcnow() -> datetime:
    """Wall clock for observation times."""
    return datetime.now(UTC)


class Instance:
    """One synchronizer process; see the module docstring."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 heap: HeapKeeper | None = None) -> None:
        """`heap`: the garbage collector's policy, for a process of its own (`run`);
        instances embedded in another process (tests, `demo`) leave its collector alone."""
        self.settings = settings
        self.clock = clock
        self.metrics = PrometheusMetrics()
        self.static = {c.id: spec_of(c) for c in settings.clusters}
        self.store: CmdbStore | None = None
        self.store_error: str | None = "not connected yet"
        self.part_errors: dict[str, str] = {}
        self._store_ready = asyncio.Event()
        self.secrets = SecretResolver(static=static_tokens(settings.clusters))
        self.setup = RegistrySetup(settings, self.secrets, self._require_store)
        self.registries: list[Registry] = [static_registry(settings.clusters),
                                           *self.setup.registries]
        self._coordinating = asyncio.Event()
        self.coordinator = self._coordinator()
        self.writer: Writer | None = None
        """The instance's senders, shared by every cluster and kind (built with the store)."""
        self.failed: str | None = None
        """Why the instance stopped by itself (a part it cannot run without died)."""
        self.factory = ClusterFactory(
            settings=settings, store=self._require_store, secrets=self.secrets,
            metrics=self.metrics, clock=clock, fallback=self.static.get,
            writer=self._require_writer, heap=heap)
        self.heap = heap
        self.controller = Controller(factory=self.factory, metrics=self.metrics,
                                     backoff_max=settings.sync.backoff_max)
        self.counts = RowCounts(count=self._count, metrics=self.metrics)
        self.setup.attach(coordinator=self.coordinator, controller=self.controller,
                          counts=self.counts, metrics=self.metrics)
        self.bkcmdb = bkcmdb_service.for_instance(self)  # None without a `bkcmdb:` section
        inst = settings.instance
        self.http = HttpServer(
            address=inst.address, port=inst.port, metric_port=inst.metric_port,
            providers=HttpProviders(status=self.status, ready=self.readiness,
                                    metrics=self.metrics.exposition,
                                    views={"/status/workloads": self.workloads},
                                    routes=self.setup.admin_routes()),
        )

    def _coordinator(self) -> Coordinator:
        pull = self.setup.pull_interval
        zk = self.settings.zookeeper
        inst = self.settings.instance
        if zk is None:
            self.metrics.set("is_master", {}, 1)
            return StandaloneCoordinator(inst.id, self.registries, pull)
        member = Member(id=inst.id, address=inst.address, port=inst.port,
                        metric_port=inst.metric_port)
        return ZooKeeperCoordinator(
            inst.id, member, hosts=zk.hosts, root=zk.root,
            session_timeout=zk.session_timeout, registries=self.registries,
            pull_interval=pull, metrics=self.metrics,
        )

    def _require_store(self) -> CmdbStore:
        if self.store is None:
            raise LookupError("the CMDB is not connected yet")
        return self.store

    def _require_writer(self) -> Writer:
        if self.writer is None:
            raise LookupError("the CMDB is not connected yet")
        return self.writer

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then shut down gracefully."""
        await self.http.start()
        log.info("instance %s serving http on %s:%d, metrics on :%d (%s)",
                 self.settings.instance.id, self.settings.instance.address,
                 self.http.bound[0], self.http.bound[-1],
                 "standalone" if self.settings.zookeeper is None else "zookeeper")
        tasks = [asyncio.create_task(self._connect_store(), name="store"),
                 asyncio.create_task(self._supervised("coordination", self._work),
                                     name="work"),
                 asyncio.create_task(self._supervised("row counts", self._refresh_counts),
                                     name="counts"),
                 asyncio.create_task(self._supervised("registries", self._registries),
                                     name="registries")]
        if self.bkcmdb is not None:
            tasks.append(asyncio.create_task(self._supervised("bk-cmdb", partial(
                self.bkcmdb.run, self._store_ready, self._require_store)), name="bkcmdb"))
        if self.heap is not None:
            tasks.append(asyncio.create_task(self._supervised("heap", self.heap.run),
                                             name="heap"))
        if self.settings.sync.tombstone_retention is not None:
            tasks.append(asyncio.create_task(
                self._supervised("tombstone retention", self._retention), name="retention"))
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await self._store_ready_or(stopping)
            if self.writer is not None and not stopping.done():
                tasks.append(writer := asyncio.create_task(self.writer.run(), name="writer"))
                done, _ = await asyncio.wait([stopping, writer],
                                             return_when=asyncio.FIRST_COMPLETED)
                if writer in done and not stopping.done():
                    reason = repr(writer.exception()) if not writer.cancelled() else "cancelled"
                    self.failed = f"the writer stopped: {reason}"
                    log.error("%s; shutting down", self.failed)
        finally:
            stopping.cancel()
            log.info("stopping: clusters, then coordination, then the store")
            await self.controller.stop_all()
            if self.bkcmdb is not None:
                await self.bkcmdb.stop()  # pushes handed back before the store closes
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.coordinator.stop()
            if self.store is not None:
                await self.store.close()
            await self.setup.aclose()
            await self.http.stop()
            log.info("stopped")

    async def _store_ready_or(self, stopping: asyncio.Task[Any]) -> None:
        """Wait for the CMDB (and so the writer), or for a stop, whichever comes first."""
        ready = asyncio.create_task(self._store_ready.wait())
        await asyncio.wait([ready, stopping], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()

    async def _supervised(self, name: str, part: Callable[[], Awaitable[None]]) -> None:
        """Run a background part; log its failure in one line and restart it with backoff."""
        backoff = Backoff(1.0, self.settings.sync.backoff_max)
        while True:
            try:
                await part()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.part_errors[name] = reason
                log.error("%s failed, restarting it: %s", name, reason)
                await backoff.sleep()

    async def _connect_store(self) -> None:
        backoff = Backoff(0.5, self.settings.sync.backoff_max)
        dsn = self.settings.cmdb.dsn.get_secret_value()
        while True:
            try:
                self.store = await open_store(dsn, pool_size=pool_size(self.settings))
            except Exception as exc:  # retried forever: an unreachable CMDB is not fatal
                self.store_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("cmdb unreachable, retrying: %s", self.store_error)
                await backoff.sleep()
                continue
            self.store_error = None
            # The writer exists before anyone hears the store is ready: the controller
            # builds reconcilers on it as soon as it does.
            multi = self.store if hasattr(self.store, "apply_groups") else None
            self.writer = Writer(settings=writer_settings(self.settings), metrics=self.metrics,
                                 multi=multi)  # type: ignore[arg-type]
            self._store_ready.set()
            log.info("cmdb connected (%s)", type(self.store).__name__)
            return

    async def _work(self) -> None:
        await self._store_ready.wait()
        await self.coordinator.start()
        self._coordinating.set()
        self.part_errors.pop("coordination", None)
        await self.controller.run(self.coordinator.owned())

    async def _registries(self) -> None:
        """Summaries and the master's duties (`registries.setup`), once coordinating."""
        await self._coordinating.wait()
        await self.setup.run()

    # -- surfaces -------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """Ready once the CMDB is reachable and takes writes, and coordination is joined."""
        if self.store_error is not None:
            return False, f"cmdb: {self.store_error}"
        failing = self.write_failure()
        if failing is not None:
            return False, f"cmdb: writes failing: {failing}"
        if not self.coordinator.ready:
            reason = self.part_errors.get("coordination")
            state = self.coordinator.status().state
            return False, f"coordination: {reason}" if reason else f"coordination: {state}"
        return True, "ready"

    def write_failure(self) -> str | None:
        """The error of writes that have kept failing past the grace period, if any."""
        now = asyncio.get_running_loop().time()
        for running in self.controller.clusters.values():
            sup = running.supervisor
            for rec in (sup.reconcilers.values() if sup is not None else ()):
                failing = rec.write_failure
                if failing is not None and now - failing[0] >= WRITE_FAILURE_GRACE:
                    return failing[1]
        return None

    async def _count(self, kind: Kind, clusters: Sequence[ClusterId]) -> dict[ClusterId, int]:
        store = self._require_store()
        return await store.table(kind).count_active_many(clusters)

    def _kinds(self, cluster: ClusterId) -> dict[str, Kind]:
        return dict(table_kinds(self.factory.specs.get(cluster) or self.static.get(cluster),
                                self.settings))

    async def _refresh_counts(self) -> None:
        """Count a cluster's rows again when its reconcilers wrote since the last count, or
        every `COUNT_MAX_AGE` (a hand edit): an idle fleet costs no queries."""
        loop = asyncio.get_running_loop()
        last: dict[ClusterId, tuple[dict[str, int], float]] = {}
        while True:
            owned = set(self.controller.clusters)
            self.counts.forget(owned)
            now = loop.time()
            every: dict[ClusterId, Mapping[str, Kind]] = {}
            some: dict[ClusterId, Mapping[str, Kind]] = {}
            only: dict[ClusterId, set[str]] = {}
            for cluster in owned:
                kinds = self._kinds(cluster)
                written = self._written(cluster, kinds)
                seen = last.get(cluster)
                if seen is None or now - seen[1] >= COUNT_MAX_AGE:
                    every[cluster] = kinds
                    last[cluster] = (written, now)
                elif seen[0] != written:
                    some[cluster] = kinds
                    only[cluster] = {k for k, n in written.items() if seen[0].get(k) != n}
                    last[cluster] = (written, seen[1])
            if every:
                await self.counts.of_many(every)
            if some:
                await self.counts.of_many(some, only=only)
            for cluster in set(last) - owned:
                del last[cluster]
            await asyncio.sleep(COUNT_INTERVAL)

    def _written(self, cluster: ClusterId, kinds: Mapping[str, Kind]) -> dict[str, int]:
        """Rows each kind's reconcilers of `cluster` have written so far."""
        running = self.controller.clusters.get(cluster)
        sup = running.supervisor if running is not None else None
        if sup is None:
            return {}
        by_resource = {r.plural: name for name, kind in kinds.items() for r in kind.resources}
        out: dict[str, int] = {}
        for resource, rec in sup.reconcilers.items():
            name = by_resource.get(resource)
            if name is not None:
                out[name] = out.get(name, 0) + rec.written
        return out

    async def workloads(self, query: Mapping[str, str]) -> dict[str, Any]:
        """`GET /status/workloads?cluster=ID`: active pods grouped by owning workload."""
        cluster = ClusterId(query.get("cluster", ""))
        if cluster not in self.controller.clusters:
            raise LookupError(f"cluster {cluster!r} is not owned by this instance")
        store = self._require_store()
        if not isinstance(store, Groups):
            raise LookupError("this CMDB cannot group rows")
        limit = min(int(query.get("limit", "50") or 50), 500)
        groups = await store.group_active(PODS, cluster, ("workload_kind", "workload_name"),
                                          limit)
        return {"cluster": cluster,
                "workloads": [{"kind": k, "name": n, "pods": c} for k, n, c in groups]}

    async def _retention(self) -> None:
        """Remove tombstones older than `sync.tombstone_retention` from owned clusters.

        Off by default (the contract keeps every row). Each instance purges only what it
        owns, in small chunks, so it never competes with itself for a cluster's rows.
        """
        retention = self.settings.sync.tombstone_retention
        assert retention is not None
        while True:
            await asyncio.sleep(RETENTION_EVERY)
            store = self.store
            if not isinstance(store, TombstoneRetention):
                continue
            before = self.clock() - timedelta(seconds=retention)
            for cluster in list(self.controller.clusters):
                for kind in self._kinds(cluster).values():
                    while await store.purge_tombstones(kind, cluster, before,
                                                       RETENTION_CHUNK) == RETENTION_CHUNK:
                        pass

    @property
    def pull(self) -> RegistryPull:
        """The coordinator's merge of the registries (health and conflicts)."""
        return self.coordinator.pull  # type: ignore[attr-defined, no-any-return]

    async def status(self) -> dict[str, Any]:
        """The /status document (no secrets: the DSN and tokens never appear)."""
        coord = self.coordinator.status()
        loop_now = asyncio.get_running_loop().time()
        clusters = []
        owned = sorted(self.controller.clusters.items())
        every = await self.counts.of_many({cluster: self._kinds(cluster) for cluster, _ in owned})
        for cluster, running in owned:
            sup = running.supervisor
            spec: ClusterSpec | None = running.assigned.spec or self.factory.specs.get(cluster)
            counts = every[cluster]
            synced = last_full_sync(sup)
            recs = sup.reconcilers if sup is not None else {}
            errors = [f"{k}: {r.status.last_error}" for k, r in recs.items()
                      if r.status.last_error]
            lease_error = sup.status.last_error if sup is not None else None
            details = {k: kind_detail(r, loop_now) for k, r in recs.items()}
            clusters.append({
                "id": cluster,
                "state": cluster_state(sup, running.error),
                **totals(details),
                "origin": str(spec.origin) if spec else None,
                "server": spec.where if spec else None,
                "last_full_sync": iso(synced) if synced else None,
                "pods": counts.get("pods", 0),
                "kinds": counts,
                "sync": details,
                "epoch": running.assigned.fence.epoch,
                "restarts": running.restarts,
                "last_error": "; ".join(errors) or lease_error or running.error,
                **({"bkcmdb": self.bkcmdb.cluster_status(cluster)} if self.bkcmdb else {}),
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
            "registries": [h.as_dict() for h in self.pull.health],
            "conflicts": dict(self.pull.conflicts),
            **self.setup.status(coord.master),
        }
        if self.bkcmdb is not None:
            doc["bkcmdb"] = self.bkcmdb.status()
        if self.part_errors:
            doc["errors"] = dict(self.part_errors)
        if coord.master and coord.assignments is not None:
            doc["assignments"] = dict(coord.assignments)
            doc["assignment_version"] = coord.assignment_version
            doc["moved_last"] = coord.moved_last
        return doc
