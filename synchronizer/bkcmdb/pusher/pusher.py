"""The pusher: make one cluster's bk-cmdb objects equal to its tables, level-triggered.

`Pusher.push(target, mode=...)` reads what changed in the tables (or all of them), compares
with the ledger of what it made, and applies the difference in dependency order; with
`mode=FULL` it first lists bk-cmdb itself and corrects the ledger by it. It never queues
events: whatever happened since the last push, and however often, the push sees only the
difference between two states, so an outage of bk-cmdb costs time, not memory, and a run
that died half-way is finished by the next one. Every request is idempotent (creates adopt
what exists, deletes of what is gone succeed), which is what lets the task processor run a
push again after a crash without care.

A push does not raise for bk-cmdb's failures; it returns a `PushReport`: what changed, the
requests it made, what is pending and why, the dead letters it made, and the error that
ended it early, if any (a transient one — 429, 5xx, an outage, an ambiguous create — or a
whole-cluster one: bad credentials, a business without the default module). The runner
schedules the next push from that.

State kept between pushes of a cluster (dropped by `forget`, which the runner calls when
another instance may have pushed it in between): the ledger as read from its store, the
desired index with its watermark, and the dead letters, which are retried when their row
changes and at every full reconcile.

The cluster itself: `ClusterTarget` says which business it belongs to, and whether it was
removed; a removed cluster is emptied (with a full listing, so nothing made by a lost run
stays behind) and then deleted, and the report says `finished`. A cluster whose business
changed is emptied in the old business first, then made again in the new one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from ..client import BkCmdbClient
from ..errors import DuplicateError, PermanentError, TransientError
from ..transport import counting
from .apply import KubeApplier, Orphans
from .desired import DesiredState
from .index import DesiredIndex
from .ledger import EntryKey, Ledger, LedgerView, ObjectKind
from .plan import KubePlan, plan
from .podapi import PodApiPush
from .repair import repair
from .report import DeadLetter, Pending, PushError, PushMode, PushReport, Reason

log = logging.getLogger("synchronizer.bkcmdb.pusher")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterTarget:
    """A cluster to push: its id (the bk-cmdb cluster uid), its business, its fate."""

    id: str
    biz_id: int
    name: str = ""
    """The bk-cmdb cluster's name when it is made; the id if empty."""
    removed: bool = False
    """The cluster is gone from the configuration: empty it in bk-cmdb, then delete it."""


@dataclass(slots=True)
class _State:
    desired: DesiredIndex
    ledger: LedgerView | None = None
    dead: dict[EntryKey, DeadLetter] = field(default_factory=dict)
    hosts: dict[str, int | None] = field(default_factory=dict)
    """Node IP → host id (None: no host), as looked up by the current push."""
    podapi: PodApiPush | None = None
    """The current push for `api: container` (it knows which pods found no module)."""
    last_plan: tuple[Any, KubePlan] | None = None
    """The latest plan and what it was made from (see `Pusher._plan`)."""


class Pusher:
    """Pushes clusters' tables to one bk-cmdb; one push per cluster at a time (the task
    processor guarantees it)."""

    def __init__(self, *, client: BkCmdbClient, desired: DesiredState, ledger: Ledger) -> None:
        self._client = client
        self._source = desired
        self._store = ledger
        self.api = client.settings.api
        self._states: dict[str, _State] = {}

    def forget(self, cluster: str) -> None:
        """Drop what is cached for `cluster` (another instance may have pushed it)."""
        self._states.pop(cluster, None)

    def dead_letters(self, cluster: str) -> list[DeadLetter]:
        """The cluster's current dead letters."""
        state = self._states.get(cluster)
        return list(state.dead.values()) if state is not None else []

    def cached(self, cluster: str) -> int:
        """Wanted values held for `cluster` (the memory the pusher spends on it)."""
        state = self._states.get(cluster)
        return state.desired.size() if state is not None else 0

    async def push(self, target: ClusterTarget, *,
                   mode: PushMode = PushMode.INCREMENTAL) -> PushReport:
        """One push of one cluster; never raises for bk-cmdb's or the stores' failures."""
        if target.removed:
            mode = PushMode.FULL
        state = self._states.setdefault(target.id, _State(DesiredIndex(target.id, self.api)))
        report = PushReport(cluster=target.id, mode=mode)
        state.hosts, state.podapi, state.last_plan = {}, None, None
        with counting() as count:
            try:
                if state.ledger is None:
                    state.ledger = await LedgerView.load(target.id, self._store)
                if mode is PushMode.INCREMENTAL:
                    report.rows_read = await state.desired.catch_up(self._source)
                else:
                    report.rows_read = await state.desired.sweep(self._source)
                if mode is PushMode.FULL:
                    state.dead.clear()
                if self.api == "kube":
                    await self._kube(target, state, report, mode)
                else:
                    await self._pods(target, state, report, mode)
            except (TransientError, DuplicateError) as exc:
                report.error = PushError.of(exc, transient=True)
                log.warning("cluster %s: push stopped: %s", target.id, exc)
            except PermanentError as exc:
                report.error = PushError.of(exc, transient=False)
                log.error("cluster %s: push stopped: %s", target.id, exc)
            except Exception as exc:  # a store's failure: retried like an outage
                report.error = PushError.of(exc, transient=True)
                log.error("cluster %s: push failed: %s: %s", target.id, type(exc).__name__,
                          exc, exc_info=log.isEnabledFor(logging.DEBUG))
            report.requests = count.requests
        if state.ledger is not None:
            await self._pending(target, state, report)
        if report.dead_letters or report.changed or report.error:
            log.info("cluster %s: %s", target.id, report.summary())
        return report

    # -- api: kube --------------------------------------------------------------------------------

    async def _kube(self, target: ClusterTarget, state: _State, report: PushReport,
                    mode: PushMode) -> None:
        assert state.ledger is not None
        entry = state.ledger.get(ObjectKind.CLUSTER, target.id)
        if entry is not None and entry.parent("biz") not in (0, target.biz_id):
            old = ClusterTarget(id=target.id, biz_id=entry.parent("biz"), removed=True)
            log.info("cluster %s moved from business %d to %d: emptying the old one",
                     target.id, old.biz_id, target.biz_id)
            await self._kube_once(old, state, report, PushMode.FULL)
            if len(state.ledger):
                return
            report.finished = False
        await self._kube_once(target, state, report, mode)

    async def _kube_once(self, target: ClusterTarget, state: _State, report: PushReport,
                         mode: PushMode) -> None:
        ledger = state.ledger
        assert ledger is not None
        hosts = state.hosts
        orphans = Orphans()
        if mode is PushMode.FULL:
            orphans = await repair(self._client, cluster=target.id, biz_id=target.biz_id,
                                   ledger=ledger, desired=state.desired, report=report,
                                   removed=target.removed)
        apply = KubeApplier(self._client, ledger, report, state.dead, cluster=target.id,
                            biz_id=target.biz_id, cluster_name=target.name)

        async def planned() -> KubePlan:
            layer = await self._plan(target, state)
            if layer.lookup:
                found = await self._client.topology.find_hosts(target.biz_id, layer.lookup)
                hosts.update({ip: found[ip].id if ip in found else None for ip in layer.lookup})
                layer = await self._plan(target, state)
            return layer

        layer = await planned()
        if not layer.actions() and not orphans:
            report.finished = target.removed and not len(ledger)
            return
        await apply.delete(layer, orphans)
        if target.removed:
            report.finished = not len(ledger) and not report.dead_letters
            return
        if (await planned()).create_cluster:
            await apply.cluster()
        await apply.namespaces(await planned())
        await apply.nodes(await planned())
        await apply.workloads(await planned())
        await apply.pods(await planned())

    @staticmethod
    async def _plan(target: ClusterTarget, state: _State) -> KubePlan:
        """`plan(...)`, reused while nothing it is made from has changed, made in a thread.

        A plan walks every wanted object of the cluster (about a second for 50,000 pods),
        and a push needs one before each layer and one to count what is pending; most
        layers change nothing (an incremental push of a busy cluster touches pods only), so
        the ledger's version, the hosts looked up and the dead letters decide whether the
        last plan still holds — within a push the desired index does not change. It runs
        in a worker thread so the event loop (the instance's watches and writes) keeps
        going meanwhile; nothing else touches this cluster's state while its push awaits it.
        """
        assert state.ledger is not None
        made_from = (id(state.desired), state.ledger.version, target,
                     tuple(sorted(state.hosts.items())),
                     tuple(sorted((k, v.digest) for k, v in state.dead.items())))
        if state.last_plan is not None and state.last_plan[0] == made_from:
            return state.last_plan[1]
        layer = await asyncio.to_thread(plan, target.id, state.desired, state.ledger,
                                        hosts=state.hosts, dead=state.dead,
                                        removed=target.removed)
        state.last_plan = (made_from, layer)
        return layer

    # -- api: container ---------------------------------------------------------------------------

    async def _pods(self, target: ClusterTarget, state: _State, report: PushReport,
                    mode: PushMode) -> None:
        assert state.ledger is not None
        push = state.podapi = PodApiPush(
            self._client, cluster=target.id, biz_id=target.biz_id, ledger=state.ledger,
            desired=state.desired, report=report, dead=state.dead, removed=target.removed)
        if mode is PushMode.FULL:
            await push.repair()
        await push.run(full=mode is PushMode.FULL)
        report.finished = target.removed and not len(state.ledger)

    # -- what is left -----------------------------------------------------------------------------

    async def _pending(self, target: ClusterTarget, state: _State, report: PushReport) -> None:
        """Count what is not equal yet (no request: the ledger against the tables)."""
        assert state.ledger is not None
        report.pending.clear()
        report.pending_sample.clear()
        if self.api == "kube":
            last = await self._plan(target, state)
            for item in last.pending():
                report.wait(item)
        else:
            push = state.podapi or PodApiPush(
                self._client, cluster=target.id, biz_id=target.biz_id, ledger=state.ledger,
                desired=state.desired, report=report, dead=state.dead, removed=target.removed)
            push.pending()
            state.podapi = None
        if not target.removed:
            for (table, uid), problem in sorted(state.desired.bad.items()):
                report.wait(Pending(kind=str(table), uid=uid, name="", reason=Reason.BAD_ROW,
                                    detail=problem))
