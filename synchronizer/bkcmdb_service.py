"""The bk-cmdb pusher inside a running instance: built from `bkcmdb:`, run beside the tables.

When the config has a `bkcmdb:` section, the instance runs, once its CMDB store is open:

- one `BkCmdbClient` (paced by `bkcmdb.rate`/`burst`), whose request observer feeds
  `bkcmdb_sync_bkcmdb_requests_total{endpoint,status}` and
  `bkcmdb_sync_bkcmdb_request_duration_seconds{endpoint}`;
- one `Pusher` over the store's tables (`DesiredState`), ledger and task table (the store's
  `BkCmdbStore` ability: `bkcmdb_tables`);
- one `TaskRunner` whose targets (`bkcmdb_targets.PushTargets`) are the clusters this
  instance owns now, plus removed clusters it must empty while it is the master;
- a `PushStatusBoard` it reports to, read by `/status` (`cluster_status`) and mapped onto
  the gauges `bkcmdb_sync_bkcmdb_pending{cluster}`, `..._last_push_timestamp_seconds`,
  `..._last_full_reconcile_timestamp_seconds`, `..._dead_letters` and the counter
  `..._objects_total{cluster,op}`.

What it must never do is make the tables wait for bk-cmdb (TEST-MATRIX row 37): it shares
nothing with the reconcilers but the database, `/readyz` does not look at it, and a bk-cmdb
that is down for minutes only makes pushes fail and back off (`sync.backoff_max` caps the
delay) while the pending gauge, recomputed from the tables at every attempt, rises. Memory
stays the size of the tables' Active rows: the pusher holds the difference between two
states, never a queue of events.

Stopping: `stop()` lets running pushes finish for a few seconds, then interrupts them and
hands their tasks back due at once, so the next owner does not wait for the claim to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from synchronizer.bkcmdb import BkCmdbClient
from synchronizer.bkcmdb.pusher import (
    ClusterPushStatus,
    ClusterTarget,
    Pusher,
    PushReport,
    PushStatusBoard,
    RunnerSettings,
    TaskRunner,
)
from synchronizer.bkcmdb.pusher.report import Reason
from synchronizer.bkcmdb_config import client_settings, describe
from synchronizer.bkcmdb_targets import Fleet, Owned, PushTargets
from synchronizer.cmdb import BkCmdbStore, CmdbStore
from synchronizer.metrics import PrometheusMetrics
from synchronizer.settings import BkCmdbConfig

log = logging.getLogger("synchronizer.bkcmdb")

REMOVAL_CHECK = 15.0
"""Seconds between looks for removed clusters (a task-table read, only on the master), and
at once when the fleet changes."""
FLEET_CHECK = 1.0
"""Seconds between looks at the fleet (in memory, nearly free): a change is acted on."""
GRACE = 5.0
"""Seconds running pushes may take to finish on stop (the pod's grace period is 60 s)."""
POLL = 2.0
"""Seconds an idle worker waits before looking for due tasks again (at most `period`)."""
STOP_MARGIN = 5.0
"""Seconds beyond `GRACE` a stop waits for interrupted pushes to hand their tasks back."""
WAITING = frozenset({Reason.NO_HOST, Reason.NO_NODE, Reason.NOT_STARTED, Reason.NO_MODULE,
                     Reason.NO_NAMESPACE, Reason.BAD_ROW})
"""Pending reasons that only the tables or bk-cmdb's hosts can end; a push cannot."""


def iso(moment: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (None stays None)."""
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


class _Observer:
    """The runner's `PushObserver`: the status board, the metrics, and waiters."""

    def __init__(self, board: PushStatusBoard, metrics: PrometheusMetrics) -> None:
        self.board = board
        self._metrics = metrics
        self._news = asyncio.Event()
        self.forget: Callable[[str], None] = lambda cluster: None
        """Called for a cluster no longer pushed here (a removed one is emptied)."""

    def pushed(self, cluster: str, report: PushReport, *, at: float) -> None:
        self.board.pushed(cluster, report, at=at)
        status = self.board.clusters[cluster]
        labels = {"cluster": cluster}
        m = self._metrics
        m.set("bkcmdb_pending", labels, status.pending)
        m.set("bkcmdb_dead_letters", labels, status.dead_letters)
        m.set("bkcmdb_last_push_timestamp_seconds", labels, at)
        if status.last_full_at is not None:
            m.set("bkcmdb_last_full_reconcile_timestamp_seconds", labels, status.last_full_at)
        for op, counts in (("created", report.created), ("updated", report.updated),
                           ("deleted", report.deleted), ("adopted", report.adopted)):
            if counts:
                m.inc("bkcmdb_objects_total", {**labels, "op": op}, sum(counts.values()))
        result = "ok" if report.error is None else (
            "transient" if report.error.transient else "error")
        m.inc("bkcmdb_pushes_total", {**labels, "mode": str(report.mode), "result": result})
        self._notify()

    def dropped(self, cluster: str) -> None:
        self.board.dropped(cluster)
        self.forget(cluster)
        for name in ("bkcmdb_pending", "bkcmdb_dead_letters",
                     "bkcmdb_last_push_timestamp_seconds",
                     "bkcmdb_last_full_reconcile_timestamp_seconds"):
            self._metrics.remove(name, {"cluster": cluster})
        self._notify()

    def _notify(self) -> None:
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, looking again after every push."""
        while not predicate():
            await self._news.wait()

    def request(self, endpoint: str, status: str, seconds: float) -> None:
        """The client's `RequestObserver`."""
        self._metrics.inc("bkcmdb_requests_total", {"endpoint": endpoint, "status": status})
        self._metrics.observe("bkcmdb_request_duration_seconds", {"endpoint": endpoint},
                              seconds)


class BkCmdbService:
    """The pusher, its runner and its surfaces in one instance (see the module docstring)."""

    def __init__(self, *, config: BkCmdbConfig, instance_id: str, metrics: PrometheusMetrics,
                 owned: Owned, fleet: Fleet, backoff_max: float,
                 full_syncs: Callable[[], Mapping[str, int]] = dict,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._instance_id = instance_id
        self._owned, self._fleet, self._full_syncs = owned, fleet, full_syncs
        self._clock = clock
        self.settings = RunnerSettings(interval=config.interval, period=config.period,
                                       hold=config.hold, concurrency=config.concurrency,
                                       backoff_max=max(backoff_max, 1.0), grace=GRACE,
                                       # objects that wait (no host, no container id yet)
                                       # must not slow the pushes of everything else
                                       retry_pending=config.period,
                                       poll=min(POLL, config.period))
        self.observer = _Observer(PushStatusBoard(), metrics)
        self.client_settings = client_settings(config)  # a bad secret file fails here, once
        self.runner: TaskRunner | None = None
        self.pusher: Pusher | None = None
        self.targets: PushTargets | None = None
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._started = False
        self._seen_full_syncs: dict[str, int] = {}

    @property
    def board(self) -> PushStatusBoard:
        """The latest push facts per cluster."""
        return self.observer.board

    async def run(self, ready: asyncio.Event, opened: Callable[[], CmdbStore]) -> None:
        """Once `ready` (the store is open), push until `stop()` or cancellation."""
        await ready.wait()
        self._started = True
        try:
            await self._run(opened())
        finally:
            self._done.set()

    async def _run(self, store: CmdbStore) -> None:
        if not isinstance(store, BkCmdbStore):
            raise TypeError(f"{type(store).__name__} has no bk-cmdb tables")
        tables = store.bkcmdb_tables(clock=self._clock)
        async with BkCmdbClient(self.client_settings,
                                observer=self.observer.request) as client:
            self.pusher = Pusher(client=client, desired=tables.desired, ledger=tables.ledger)
            self.targets = PushTargets(owned=self._owned, fleet=self._fleet,
                                       tasks=tables.tasks, ledger=tables.ledger)
            self.observer.forget = self.targets.forget
            self.runner = TaskRunner(pusher=self.pusher, queue=tables.tasks,
                                     targets=self._targets, owner=self._instance_id,
                                     clock=self._clock, sleep=asyncio.sleep,
                                     settings=self.settings, observer=self.observer)
            log.info("pushing to bk-cmdb %s, %d cluster(s) at once", describe(self.config),
                     self.settings.concurrency)
            if self._stopping.is_set():
                return
            async with asyncio.TaskGroup() as group:
                watcher = group.create_task(self._watch(self.targets))
                await self.runner.run()
                watcher.cancel()

    def _targets(self) -> dict[str, ClusterTarget]:
        """The runner's targets; first, tell it about full syncs finished since it last
        asked, so the next push of such a cluster reads every row (see `pusher.index`):
        the runner asks right before it takes a task, so no push can miss one."""
        assert self.runner is not None and self.targets is not None
        counts = dict(self._full_syncs())
        for cluster, n in counts.items():
            if n > self._seen_full_syncs.get(cluster, 0):  # first sight after one: sweep too
                self.runner.resweep(cluster)
        self._seen_full_syncs = counts
        return self.targets()

    async def _watch(self, targets: PushTargets) -> None:
        """Look for removed clusters: when the fleet changes, and every `REMOVAL_CHECK`
        seconds."""
        loop = asyncio.get_running_loop()
        fleet: Collection[str] | None = None
        checked = -REMOVAL_CHECK
        while True:
            now_fleet = self._fleet()
            if now_fleet != fleet or loop.time() - checked >= REMOVAL_CHECK:
                fleet, checked = now_fleet, loop.time()
                try:
                    await targets.refresh()
                except Exception as exc:  # the task table is down: the runner says so too
                    log.warning("bk-cmdb: cannot look for removed clusters: %s", exc)
            await asyncio.sleep(FLEET_CHECK)

    async def stop(self) -> None:
        """Stop taking tasks; running pushes get `GRACE` seconds, then are handed back.
        Returns when the runner has ended (bounded)."""
        self._stopping.set()
        if self.runner is not None:
            self.runner.stop()
        if self._started:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GRACE + STOP_MARGIN):
                    await self._done.wait()

    # -- surfaces ---------------------------------------------------------------------------------

    def cluster_status(self, cluster: str) -> dict[str, Any]:
        """The `bkcmdb` object of a cluster in `/status` (no secret: nothing of the client)."""
        st = self.board.clusters.get(cluster) or ClusterPushStatus()
        running = self.runner is not None and cluster in self.runner.running
        waiting = sum(n for r, n in st.pending_by_reason.items() if r in WAITING)
        if st.last_error:
            state = "error"
        elif st.pushes == 0:
            state = "pushing" if running else "waiting"
        elif st.pending > waiting:
            state = "pending"
        else:
            state = "in sync"
        return {"state": state, "pending": st.pending,
                "pending_by_reason": dict(st.pending_by_reason),
                "last_push": iso(st.last_push_at), "last_full_reconcile": iso(st.last_full_at),
                "last_ok": iso(st.last_ok_at), "last_error": st.last_error or None,
                "last_error_code": st.last_error_code, "last_result": st.last_result or None,
                "dead_letters": st.dead_letters, "pushes": st.pushes,
                "requests": st.requests, "running": running}

    def status(self) -> dict[str, Any]:
        """The instance-wide `bkcmdb` object of `/status`."""
        doc: dict[str, Any] = {"url": self.config.url, "api": self.config.api,
                               "auth": self.config.auth,
                               "running": self.runner.running if self.runner else [],
                               "removing": sorted(self.targets.removed) if self.targets else []}
        return doc

    async def wait(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, looking after every push (tests and tools wait
        on this instead of polling)."""
        await self.observer.wait(predicate)


def fleet_of(coordinator: Any) -> Callable[[], Collection[str] | None]:
    """The `Fleet` of a coordinator: every assigned cluster while this instance is master
    and its registries all answered; None otherwise."""
    def fleet() -> Collection[str] | None:
        if not coordinator.ready:
            return None
        status = coordinator.status()
        pull = getattr(coordinator, "pull", None)
        if not status.master or status.assignments is None or pull is None \
                or not pull.complete:
            return None
        return set(status.assignments)
    return fleet


def owned_of(controller: Any, specs: Mapping[str, Any], fallback: Callable[[str], Any]
             ) -> Callable[[], dict[str, int]]:
    """The `Owned` of a controller: running clusters → the business of their spec."""
    def owned() -> dict[str, int]:
        out: dict[str, int] = {}
        for cluster, running in controller.clusters.items():
            spec = specs.get(cluster) or running.assigned.spec or fallback(cluster)
            if spec is not None:
                out[str(cluster)] = int(spec.biz_id)
        return out
    return owned


def full_syncs_of(controller: Any) -> Callable[[], dict[str, int]]:
    """Full syncs finished per running cluster, summed over its kinds."""
    def counts() -> dict[str, int]:
        out: dict[str, int] = {}
        for cluster, running in controller.clusters.items():
            sup = running.supervisor
            if sup is not None:
                out[str(cluster)] = sum(r.status.full_syncs for r in sup.reconcilers.values())
        return out
    return counts


def for_instance(instance: Any) -> BkCmdbService | None:
    """The service an `app.Instance` runs, or None without a `bkcmdb:` section."""
    config = instance.settings.bkcmdb
    if config is None:
        return None
    return BkCmdbService(
        config=config, instance_id=instance.settings.instance.id, metrics=instance.metrics,
        owned=owned_of(instance.controller, instance.factory.specs, instance.static.get),
        fleet=fleet_of(instance.coordinator), backoff_max=instance.settings.sync.backoff_max,
        full_syncs=full_syncs_of(instance.controller))
