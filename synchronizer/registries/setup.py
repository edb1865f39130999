"""Everything beyond the static registry, put together for one instance.

The composition root (`app.Instance`) hands its settings, secret resolver and store
here and gets back: the extra registries (SyncCluster, BCS, topologies) and their secret
sources; the admin API's routes; extra /status fields; and one part to run (`run`).

`run` does two things on every instance, master or not:
- publishes this instance's cluster summaries (`synchronizer.summaries`), which the
  master's SyncCluster status and every instance's `GET /v1/topologies` read;
- follows the coordinator's leadership and, while this instance is master, runs the
  master's duties, each supervised (logged and restarted with backoff if it fails):
  the topology watch (kicks the pull when a topology is written), the registries' health
  as metrics (`metrics`), the removal of clusters that left every registry
  (`removal`), and - with `registries.crd.enabled` -
  the SyncCluster status writer and the kopf operator. Started on election, cancelled on
  stand-down, so there is exactly one of each in a deployment (standalone: always).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from reconciler import Fence
from reconciler._backoff import Backoff
from synchronizer.cmdb import CmdbStore
from synchronizer.settings import Settings
from synchronizer.summaries import LocalSummaries, Summaries, Summary, ZkSummaries, summarize

from .api import Registry, RegistryPull
from .bcs import BcsRegistry
from .crd import CrdRegistry
from .crd_operator import SyncClusterOperator
from .crd_status import StatusWriter
from .home import HomeCluster, home_endpoint
from .metrics import GaugeSink, RegistryMetrics
from .removal import Removal
from .resolve import SecretResolver
from .spec import ClusterSpec
from .tables import RegistryTables
from .topology import TopologyRegistry

log = logging.getLogger(__name__)

Placement = Mapping[str, tuple[str, ClusterSpec | None]]


class RegistrySetup:
    """The registries' parts of one instance; see the module docstring."""

    def __init__(self, settings: Settings, secrets: SecretResolver,
                 store: Callable[[], CmdbStore]) -> None:
        self.settings = settings
        self._store = store
        reg = settings.registries
        self.home: HomeCluster | None = None
        self.crd: CrdRegistry | None = None
        self.bcs: BcsRegistry | None = None
        self.topology = TopologyRegistry(store)
        if reg.crd.enabled:
            self.home = HomeCluster(home_endpoint(reg.crd))
            self.crd = CrdRegistry(self.home, reg.crd.namespace)
            secrets.add("secret", self.home.secret)
        if reg.http.url:
            self.bcs = BcsRegistry(
                reg.http.url, reg.http.token.get_secret_value(),
                interval=reg.http.interval or settings.sync.cluster_pull_interval,
                insecure=reg.http.insecure_skip_tls_verify, ca_file=reg.http.ca_file or None)
            secrets.add("registry", self.bcs.lookup)
        secrets.add("topology", self.topology.lookup)
        self.registries: list[Registry] = [
            r for r in (self.crd, self.bcs, self.topology) if r is not None]
        self.coordinator: Any = None
        self.controller: Any = None
        self.counts: Any = None
        self.summaries: Summaries | None = None
        self.removal: Removal | None = None
        self.status_writer: StatusWriter | None = None
        self.operator: SyncClusterOperator | None = None
        self.exported: RegistryMetrics | None = None

    @property
    def pull_interval(self) -> float:
        """Seconds between registry pulls: the shortest of the configured intervals."""
        interval = self.settings.sync.cluster_pull_interval
        return min(interval, self.bcs.interval) if self.bcs is not None else interval

    def admin_routes(self) -> list[web.RouteDef]:
        """The admin API's routes (none without `instance.admin_token`)."""
        token = self.settings.instance.admin_token
        if token is None or not token.get_secret_value():
            return []
        from synchronizer.admin.api import admin_routes
        from synchronizer.admin.service import TopologyService
        from synchronizer.kube import probe

        service = TopologyService(tables=lambda: RegistryTables(self._store()), view=self,
                                  probe=probe)
        return admin_routes(token.get_secret_value(), service)

    def attach(self, *, coordinator: Any, controller: Any, counts: Any,
               metrics: GaugeSink | None = None) -> None:
        """Wire in the instance's coordinator, controller, row counts and metrics."""
        self.coordinator = coordinator
        self.controller = controller
        self.counts = counts
        inst = self.settings.instance
        compute = self._compute
        session = getattr(coordinator, "session", None)
        self.summaries = (LocalSummaries(inst.id, compute) if session is None
                          else ZkSummaries(session, coordinator.root, inst.id, compute))
        pull = self.pull
        if metrics is not None:
            self.exported = RegistryMetrics(pull, metrics)
        self.removal = Removal(
            pull=pull, store=self._store, assigned=self._busy, fence=self._removal_fence,
            mode=self.settings.sync.on_cluster_removed, lease_ttl=self.settings.sync.lease_ttl)
        if self.crd is not None and self.home is not None:
            removal = self.removal
            self.status_writer = StatusWriter(
                registry=self.crd, pull=pull, summaries=self.summaries,
                owners=lambda: {c: o for c, (o, _) in self.placement().items()},
                removing=lambda: removal.pending if removal.mode == "delete" else frozenset(),
                removal_seen=(lambda: removal.seen) if removal.mode == "delete" else None)
            writer = self.status_writer
            self.operator = SyncClusterOperator(
                home=self.home, namespace=self.settings.registries.crd.namespace,
                kick=pull.kick, board=lambda: writer.board,
                pulls_started=lambda: pull.started)

    # -- views --------------------------------------------------------------------------

    @property
    def pull(self) -> RegistryPull:
        """The coordinator's merge of the registries."""
        return self.coordinator.pull  # type: ignore[no-any-return]

    def placement(self) -> Placement:
        """Every assigned cluster's owner and spec, as this instance knows it."""
        current = getattr(self.coordinator, "current", None)
        if current is not None:  # standalone: this instance owns what it owns
            return {str(c): (a.fence.owner, a.spec) for c, a in current.items()}
        doc = self.coordinator.assignment
        out: dict[str, tuple[str, ClusterSpec | None]] = {}
        for cluster, owner in doc.owners.items():
            raw = doc.specs.get(cluster)
            try:
                spec = ClusterSpec.from_json(raw) if raw else None
            except (KeyError, TypeError, ValueError):
                spec = None
            out[cluster] = (owner, spec)
        return out

    def _busy(self) -> set[str]:
        """Clusters assigned to anyone, or still running here (a stop takes a moment)."""
        return set(self.placement()) | {str(c) for c in self.controller.clusters}

    async def _compute(self) -> dict[str, Summary]:
        from synchronizer.clusters import table_kinds

        out: dict[str, Summary] = {}
        running_now = list(self.controller.clusters.items())
        counted = {cluster: self.counts.peek(cluster) for cluster, _ in running_now}
        counted |= await self.counts.of_many({  # the never counted, all at once
            cluster: table_kinds(running.assigned.spec, self.settings)
            for cluster, running in running_now if not counted[cluster]})
        for cluster, running in running_now:
            counts = counted[cluster]
            spec = running.assigned.spec
            out[str(cluster)] = summarize(running.supervisor, running.error,
                                          counts.get("pods", 0), spec.where if spec else "")
        return out

    async def _removal_fence(self) -> Fence:
        owner = f"{self.settings.instance.id}/removal"
        session = getattr(self.coordinator, "session", None)
        if session is None:
            return Fence(owner=owner, epoch=0)
        _, stat = await session.call(session.client.get_async,
                                     f"{self.coordinator.root}/assignment")
        return Fence(owner=owner, epoch=int(stat.mzxid))

    def status(self, master: bool) -> dict[str, Any]:
        """Fields added to /status: held clusters; on the master, removals."""
        doc: dict[str, Any] = {"held": dict(self.pull.held)}
        if master and self.removal is not None:
            doc["removed"] = list(self.removal.removed)
            doc["removal_pending"] = sorted(self.removal.pending)
        return doc

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Publish summaries; run the master's duties while master (see the module)."""
        assert self.summaries is not None
        async with asyncio.TaskGroup() as group:
            group.create_task(self._supervised("cluster summaries", self.summaries.run))
            group.create_task(self._follow_leadership())

    async def _follow_leadership(self) -> None:
        duties: asyncio.Task[None] | None = None
        try:
            async for leading in self.coordinator.leadership():
                if leading and duties is None:
                    duties = asyncio.create_task(self._duties(), name="master-duties")
                elif not leading and duties is not None:
                    duties.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await duties
                    duties = None
        finally:
            if duties is not None:
                duties.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await duties

    async def _duties(self) -> None:
        parts: dict[str, Callable[[], Awaitable[None]]] = {
            "topology watch": lambda: self.topology.watch(self.pull)}
        if self.exported is not None:
            parts["registry metrics"] = self.exported.run
        if self.removal is not None:
            parts["cluster removal"] = self.removal.run
        if self.status_writer is not None:
            parts["SyncCluster status"] = self.status_writer.run
        if self.operator is not None:
            parts["SyncCluster operator"] = self.operator.run
        log.info("master duties: %s", ", ".join(parts))
        async with asyncio.TaskGroup() as group:
            for name, part in parts.items():
                group.create_task(self._supervised(name, part), name=name)

    async def _supervised(self, name: str, part: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(1.0, self.settings.sync.backoff_max)
        while True:
            try:
                await part()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("%s failed, restarting it: %s", name,
                          f"{type(exc).__name__}: {exc}".splitlines()[0])
                await backoff.sleep()

    async def aclose(self) -> None:
        """Close the home cluster's client."""
        if self.home is not None:
            await self.home.aclose()
