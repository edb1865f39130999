"""Applying a `KubePlan` layer to bk-cmdb, one batch at a time, the ledger written after each.

Batches are cut here, at `min(batch_size, bk-cmdb's limit for the type)`, so each call of
the client is exactly one request and its outcome belongs to exactly those objects: the
ledger records them right after bk-cmdb said yes, and a failure is about that batch alone.

bk-cmdb writes a batch in one transaction, so a permanent refusal (`result: false` that is
not an outage) says "something in these objects is wrong" without saying which. The batch
is then halved and each half tried again, down to single objects; the one bk-cmdb still
refuses becomes a *dead letter* (the object, the action, bk-cmdb's code and message), and
every other object of the batch is written. A transient failure (429, 5xx, an outage, an
ambiguous create) is not handled here: it ends the push, the ledger holds everything done
so far, and the next run carries on from the difference. An auth failure ends the push too:
every request would fail the same way.

Creates go through the client's idempotent `create_*`, which adopts objects that exist
already (a create whose answer was lost, a run that died before writing the ledger). An
adopted object may be a stale leftover, so it is compared with what is wanted: equal, it
is recorded with the wanted digest; different, with an empty digest, so the next plan
brings it up to date (an update, or for a pod a delete and create).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson

from .. import codes
from ..batching import chunks
from ..client import BkCmdbClient
from ..errors import AuthError, PermanentError
from ..types import ClusterSpec, ContainerSpec, NamespaceSpec, NodeSpec, PodSpec, WorkloadSpec
from .ledger import EntryKey, LedgerEntry, LedgerView, ObjectKind
from .mapping import WantedNamespace, WantedNode, WantedWorkload
from .plan import KubePlan, PodCreate
from .report import DeadLetter, PushReport

log = logging.getLogger("synchronizer.bkcmdb.pusher")
T = TypeVar("T")
K = ObjectKind


@dataclass(slots=True)
class Orphans:
    """Objects of our bk-cmdb cluster that no row wants and no ledger entry names."""

    pods: list[tuple[int, str]] = field(default_factory=list)
    workloads: list[tuple[str, int, str]] = field(default_factory=list)
    """(bk kind, id, name)"""
    nodes: list[tuple[int, str]] = field(default_factory=list)
    namespaces: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pods) + len(self.workloads) + len(self.nodes) + len(self.namespaces)


@dataclass(frozen=True, slots=True)
class _Gone:
    """One thing to delete: a ledger entry, or an orphan known only by its bk id."""

    kind: ObjectKind
    bk_id: int
    name: str
    bk_kind: str = ""
    entry: LedgerEntry | None = None

    @property
    def uid(self) -> str:
        return self.entry.uid if self.entry is not None else f"bk:{self.bk_id}"


def _gone(entries: Sequence[LedgerEntry]) -> list[_Gone]:
    return [_Gone(e.kind, e.bk_id, e.name, e.bk_kind, e) for e in entries]


class KubeApplier:
    """Sends one push's layers to bk-cmdb and writes the ledger as it goes."""

    def __init__(self, client: BkCmdbClient, ledger: LedgerView, report: PushReport,
                 dead: dict[EntryKey, DeadLetter], *, cluster: str, biz_id: int,
                 cluster_name: str) -> None:
        self._kube = client.kube
        self._limit = client.settings.limit
        self._ledger, self._report, self._dead = ledger, report, dead
        self._cluster, self._biz, self._name = cluster, biz_id, cluster_name

    # -- batches and dead letters -----------------------------------------------------------------

    async def _each(self, items: Sequence[T], size: int,
                    send: Callable[[Sequence[T]], Awaitable[None]],
                    refused: Callable[[T, PermanentError], None]) -> None:
        for chunk in chunks(items, size):
            await self._halving(chunk, send, refused)

    async def _halving(self, chunk: Sequence[T], send: Callable[[Sequence[T]], Awaitable[None]],
                       refused: Callable[[T, PermanentError], None]) -> None:
        try:
            await send(chunk)
        except AuthError:
            raise
        except PermanentError as exc:
            if len(chunk) == 1:
                refused(chunk[0], exc)
                return
            middle = len(chunk) // 2
            await self._halving(chunk[:middle], send, refused)
            await self._halving(chunk[middle:], send, refused)

    def _letter(self, kind: ObjectKind, uid: str, name: str, action: str, digest: str,
                exc: PermanentError) -> None:
        letter = DeadLetter(kind=kind, uid=uid, name=name, action=action, code=exc.code,
                            message=exc.message, digest=digest)
        self._dead[(kind, uid)] = letter
        self._report.dead_letters.append(letter)
        log.warning("cluster %s: %s", self._cluster, letter.line())

    # -- deletes, bottom-up -----------------------------------------------------------------------

    async def delete(self, plan: KubePlan, orphans: Orphans | None = None) -> None:
        """Delete pods, workloads, nodes, namespaces (doomed entries and orphans), then the
        cluster if the plan says so and nothing is left."""
        orphans = orphans or Orphans()
        pods = _gone(plan.delete.get(K.POD, [])) + [_Gone(K.POD, i, n) for i, n in orphans.pods]
        await self._delete(pods, codes.MAX_PODS,
                           lambda ids: self._kube.delete_pods(self._biz, ids))
        workloads = _gone(plan.delete.get(K.WORKLOAD, []) + plan.delete.get(K.PODS_WORKLOAD, []))
        workloads += [_Gone(K.WORKLOAD, i, n, kind) for kind, i, n in orphans.workloads]
        for bk_kind in sorted({g.bk_kind for g in workloads}):
            await self._delete([g for g in workloads if g.bk_kind == bk_kind],
                               codes.MAX_WORKLOADS,
                               lambda ids, k=bk_kind: self._kube.delete_workloads(
                                   self._biz, k, ids))
        nodes = _gone(plan.delete.get(K.NODE, [])) + [_Gone(K.NODE, i, n)
                                                      for i, n in orphans.nodes]
        await self._delete(nodes, codes.MAX_NODES,
                           lambda ids: self._kube.delete_nodes(self._biz, ids))
        namespaces = _gone(plan.delete.get(K.NAMESPACE, []))
        namespaces += [_Gone(K.NAMESPACE, i, n) for i, n in orphans.namespaces]
        await self._delete(namespaces, codes.MAX_NAMESPACES,
                           lambda ids: self._kube.delete_namespaces(self._biz, ids))
        entry = self._ledger.get(K.CLUSTER, self._cluster)
        if plan.delete_cluster and entry is not None and len(self._ledger) == 1:
            await self._delete(_gone([entry]), codes.MAX_CLUSTER_IDS,
                               lambda ids: self._kube.delete_clusters(self._biz, ids))

    async def _delete(self, items: list[_Gone], limit: int,
                      call: Callable[[list[int]], Awaitable[None]]) -> None:
        async def send(chunk: Sequence[_Gone]) -> None:
            await call([g.bk_id for g in chunk])
            await self._ledger.remove([g.entry.key for g in chunk if g.entry is not None])
            for g in chunk:
                self._report.deleted[g.kind] += 1

        def refused(g: _Gone, exc: PermanentError) -> None:
            self._letter(g.kind, g.uid, g.name, "delete", "", exc)
        await self._each(items, self._limit(limit), send, refused)

    # -- creates and updates, top-down ------------------------------------------------------------

    async def cluster(self) -> int:
        """Make (or adopt) the kube cluster; its bk id."""
        found = await self._kube.ensure_cluster(ClusterSpec(
            uid=self._cluster, name=self._name or self._cluster, biz_id=self._biz))
        await self._ledger.put([LedgerEntry(kind=K.CLUSTER, uid=self._cluster, bk_id=found.id,
                                            name=found.name, parents={"biz": self._biz})])
        self._report.created[K.CLUSTER] += 1
        return found.id

    async def namespaces(self, plan: KubePlan) -> None:
        """Create and update the plan's namespaces."""
        cid = plan.cluster_id

        async def create(chunk: Sequence[WantedNamespace]) -> None:
            adopted: dict[Any, Any] = {}
            ids = await self._kube.create_namespaces(self._biz, [
                NamespaceSpec(cluster_id=cid, name=w.name, labels=w.labels) for w in chunk],
                adopted=adopted)
            await self._record(K.NAMESPACE, [
                (w, ids[(cid, w.name)], adopted.get((cid, w.name)),
                 {"cluster": cid}) for w in chunk],
                lambda w, rec: w.matches(rec))

        await self._each(plan.create_namespaces, self._limit(codes.MAX_NAMESPACES), create,
                         self._refused_create(K.NAMESPACE))
        await self._updates(K.NAMESPACE, plan.update_namespaces, codes.MAX_NAMESPACES,
                            lambda ids, data, kind: self._kube.update_namespaces(
                                self._biz, ids, data))

    async def nodes(self, plan: KubePlan) -> None:
        """Create and update the plan's nodes."""
        cid = plan.cluster_id

        async def create(chunk: Sequence[tuple[WantedNode, int]]) -> None:
            adopted: dict[Any, Any] = {}
            ids = await self._kube.create_nodes(self._biz, [
                NodeSpec(cluster_id=cid, host_id=host, name=w.name,
                         internal_ip=(w.internal_ip,), labels=w.labels,
                         unschedulable=w.unschedulable) for w, host in chunk], adopted=adopted)
            hosts = {w.uid: host for w, host in chunk}
            await self._record(K.NODE, [
                (w, ids[(cid, w.name)], adopted.get((cid, w.name)),
                 {"cluster": cid, "host": host}) for w, host in chunk],
                lambda w, rec: w.matches(rec, hosts[w.uid]))

        def refused(item: tuple[WantedNode, int], exc: PermanentError) -> None:
            self._refused_create(K.NODE)(item[0], exc)
        await self._each(plan.create_nodes, self._limit(codes.MAX_NODES), create, refused)
        await self._updates(K.NODE, plan.update_nodes, codes.MAX_NODES,
                            lambda ids, data, kind: self._kube.update_nodes(
                                self._biz, ids, data))

    async def workloads(self, plan: KubePlan) -> None:
        """Create and update the plan's workloads (and `pods` workloads)."""
        for bk_kind in sorted({w.bk_kind for _, w, _ in plan.create_workloads}):
            items = [c for c in plan.create_workloads if c[1].bk_kind == bk_kind]

            async def create(chunk: Sequence[tuple[ObjectKind, WantedWorkload, int]]) -> None:
                adopted: dict[Any, Any] = {}
                ids = await self._kube.create_workloads(self._biz, [
                    WorkloadSpec(kind=w.bk_kind, namespace_id=ns, name=w.name,
                                 labels=w.labels, replicas=w.replicas)
                    for _, w, ns in chunk], adopted=adopted)
                for kind in {k for k, _, _ in chunk}:
                    await self._record(kind, [
                        (w, ids[(w.bk_kind, ns, w.name)], adopted.get((w.bk_kind, ns, w.name)),
                         {"namespace": ns}) for k, w, ns in chunk if k is kind],
                        lambda w, rec: w.matches(rec))

            def refused(item: tuple[ObjectKind, WantedWorkload, int],
                        exc: PermanentError) -> None:
                self._refused_create(item[0])(item[1], exc)
            await self._each(items, self._limit(codes.MAX_WORKLOADS), create, refused)
        for bk_kind in sorted({e.bk_kind for e, _ in plan.update_workloads}):
            await self._updates(K.WORKLOAD, [u for u in plan.update_workloads
                                             if u[0].bk_kind == bk_kind],
                                codes.MAX_WORKLOAD_UPDATE_IDS,
                                lambda ids, data, kind: self._kube.update_workloads(
                                    self._biz, kind, ids, data))

    async def pods(self, plan: KubePlan) -> None:
        """Create the plan's pods."""
        async def create(chunk: Sequence[PodCreate]) -> None:
            adopted: dict[Any, Any] = {}
            ids = await self._kube.create_pods([PodSpec(
                biz_id=self._biz, cluster_id=plan.cluster_id, namespace_id=c.namespace_id,
                node_id=c.node_id, host_id=c.host_id, ref_kind=c.ref_kind, ref_id=c.ref_id,
                name=c.pod.name, ip=c.pod.ip, labels=c.pod.labels,
                containers=tuple(ContainerSpec(name=x.name, image=x.image,
                                               container_uid=x.container_uid)
                                 for x in c.pod.containers)) for c in chunk], adopted=adopted)
            by_uid = {c.pod.uid: c for c in chunk}
            await self._record(K.POD, [
                (c.pod, ids[(c.ref_kind, c.ref_id, c.pod.name)],
                 adopted.get((c.ref_kind, c.ref_id, c.pod.name)),
                 {"namespace": c.namespace_id, "node": c.node_id, "workload": c.ref_id,
                  "host": c.host_id}) for c in chunk],
                lambda p, rec: p.matches(rec, namespace_id=by_uid[p.uid].namespace_id,
                                         node_id=by_uid[p.uid].node_id,
                                         ref_kind=by_uid[p.uid].ref_kind,
                                         ref_id=by_uid[p.uid].ref_id,
                                         host_id=by_uid[p.uid].host_id),
                bk_kinds={c.pod.uid: c.ref_kind for c in chunk})

        def refused(item: PodCreate, exc: PermanentError) -> None:
            self._refused_create(K.POD)(item.pod, exc)
        await self._each(plan.create_pods, self._limit(codes.MAX_PODS), create, refused)

    # -- shared -----------------------------------------------------------------------------------

    def _refused_create(self, kind: ObjectKind) -> Callable[[Any, PermanentError], None]:
        def refused(wanted: Any, exc: PermanentError) -> None:
            self._letter(kind, wanted.uid, wanted.name, "create", wanted.digest, exc)
        return refused

    async def _record(self, kind: ObjectKind, made: list[tuple[Any, int, Any, dict[str, int]]],
                      same: Callable[[Any, Any], bool],
                      bk_kinds: dict[str, str] | None = None) -> None:
        """Write created (or adopted) objects to the ledger and the report."""
        entries = []
        for wanted, bk_id, adopted, parents in made:
            fresh = adopted is None or same(wanted, adopted)
            bk_kind = (bk_kinds or {}).get(wanted.uid, getattr(wanted, "bk_kind", ""))
            entries.append(LedgerEntry(
                kind=kind, uid=wanted.uid, bk_id=bk_id, digest=wanted.digest if fresh else "",
                name=wanted.name, namespace=getattr(wanted, "namespace", ""), bk_kind=bk_kind,
                parents=parents))
            (self._report.created if adopted is None else self._report.adopted)[kind] += 1
            self._dead.pop((kind, wanted.uid), None)
        await self._ledger.put(entries)

    async def _updates(self, kind: ObjectKind, items: list[tuple[LedgerEntry, Any]], limit: int,
                       call: Callable[[list[int], dict[str, Any], str], Awaitable[None]]) -> None:
        """Update in place, one request per distinct `data` (bk-cmdb sets one data on all ids)."""
        groups: dict[bytes, list[tuple[LedgerEntry, Any]]] = {}
        for entry, wanted in items:
            key = orjson.dumps([entry.bk_kind, wanted.update()], option=orjson.OPT_SORT_KEYS)
            groups.setdefault(key, []).append((entry, wanted))
        for group in groups.values():
            data = group[0][1].update()

            async def send(chunk: Sequence[tuple[LedgerEntry, Any]],
                           data: dict[str, Any] = data) -> None:
                await call([e.bk_id for e, _ in chunk], data, chunk[0][0].bk_kind)
                await self._ledger.put([replace(e, digest=w.digest) for e, w in chunk])
                for e, w in chunk:
                    self._report.updated[e.kind] += 1
                    self._dead.pop((e.kind, w.uid), None)

            def refused(item: tuple[LedgerEntry, Any], exc: PermanentError) -> None:
                self._letter(kind, item[1].uid, item[1].name, "update", item[1].digest, exc)
            await self._each(group, self._limit(limit), send, refused)
