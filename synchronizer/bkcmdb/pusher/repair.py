"""The full reconcile for `api: kube`: list bk-cmdb itself and correct the ledger by it.

Between full reconciles the pusher trusts its ledger: it is the record of what it made, and
comparing the tables with it costs nothing. But bk-cmdb has other writers — people, with the
web UI or the API — and the ledger can lag behind bk-cmdb after a crash. So every `interval`
the pusher lists every object of its kube cluster (pages of 500, through the client) and
brings the ledger back in line with what is really there, before the ordinary plan runs:

- an entry whose object is gone (deleted by hand) is *forgotten*, so the plan makes it again;
- an entry whose object differs from what the tables want (edited by hand) gets an empty
  digest, so the plan updates it in place, or deletes and makes it again for a pod;
- an object no entry names, whose unique key matches a row the ledger lacks (a create whose
  answer was lost, a run that died before writing the ledger, a ledger lost altogether), is
  *adopted*, with the digest of what is wanted only if it holds just that;
- an object no entry names and no row wants is an *orphan*: ours (it sits in our cluster),
  but nobody wants it, so it is deleted with the plan's deletes, pods first.

Containers are not listed (they would cost a request per page of containers for the whole
cluster); a pod whose containers were edited by hand is not detected. Workload kinds the
product never makes (gameDeployment, …) are not listed either; one made by hand in our
namespace would block deleting that namespace, which is then dead-lettered with bk-cmdb's
message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..client import BkCmdbClient
from .apply import Orphans
from .index import DesiredIndex
from .ledger import LedgerEntry, LedgerView, ObjectKind
from .mapping import PODS_KIND, PODS_WORKLOAD_NAME, WORKLOAD_KINDS, WantedPod
from .plan import pods_workload
from .report import PushReport

K = ObjectKind
LISTED_KINDS = (*WORKLOAD_KINDS.values(), PODS_KIND)


class _Repair:
    def __init__(self, ledger: LedgerView, desired: DesiredIndex, report: PushReport,
                 removed: bool) -> None:
        self.ledger, self.report = ledger, report
        self.desired = DesiredIndex(desired.cluster, desired.api) if removed else desired
        self.orphans = Orphans()
        self.fixes: list[LedgerEntry] = []
        self.gone: list[tuple[ObjectKind, str]] = []

    def forget(self, entries: Iterable[LedgerEntry]) -> None:
        for e in entries:
            self.gone.append(e.key)
            self.report.forgotten[e.kind] += 1

    def drift(self, entry: LedgerEntry, **changes: Any) -> None:
        self.fixes.append(replace(entry, digest="", **changes))
        self.report.drifted[entry.kind] += 1

    def adopt(self, entry: LedgerEntry) -> None:
        self.fixes.append(entry)
        self.report.adopted[entry.kind] += 1

    async def flush(self) -> None:
        await self.ledger.remove(self.gone)
        await self.ledger.put(self.fixes)
        self.gone, self.fixes = [], []

    def ns_names(self) -> dict[int, str]:
        """bk namespace id → name, from the ledger as repaired so far."""
        return {e.bk_id: e.name for e in self.ledger.of(K.NAMESPACE)}

    def ns_uids(self) -> dict[int, str]:
        return {e.bk_id: e.uid for e in self.ledger.of(K.NAMESPACE)}


async def repair(client: BkCmdbClient, *, cluster: str, biz_id: int, ledger: LedgerView,
                 desired: DesiredIndex, report: PushReport, removed: bool = False) -> Orphans:
    """Correct `ledger` by what bk-cmdb holds; the orphans to delete."""
    kube = client.kube
    r = _Repair(ledger, desired, report, removed)
    found = await kube.list_clusters(biz_id, uids=[cluster])
    entry = ledger.get(K.CLUSTER, cluster)
    if not found or (entry is not None and entry.bk_id != found[0].id):
        # nothing can outlive its cluster: every entry under the old one is gone
        r.forget(ledger.all())
        await r.flush()
    if not found:
        return r.orphans
    cid = found[0].id
    if ledger.get(K.CLUSTER, cluster) is None:
        r.adopt(LedgerEntry(kind=K.CLUSTER, uid=cluster, bk_id=cid, name=found[0].name,
                            parents={"biz": biz_id}))
    await r.flush()

    await _namespaces(r, await kube.list_namespaces(biz_id, cid), cid)
    await _nodes(r, await kube.list_nodes(biz_id, cid), cid)
    listed = [w for kind in LISTED_KINDS
              for w in await kube.list_workloads(biz_id, kind, cluster_id=cid)]
    await _workloads(r, listed)
    await _pods(r, await kube.list_pods(biz_id, cid))
    report.orphans = len(r.orphans)
    return r.orphans


async def _namespaces(r: _Repair, listed: list[Any], cid: int) -> None:
    by_id = {n.id: n for n in listed}
    wanted = r.desired.namespaces
    r.forget(e for e in r.ledger.of(K.NAMESPACE) if e.bk_id not in by_id)
    await r.flush()
    for e in r.ledger.of(K.NAMESPACE):
        w = wanted.get(e.uid)
        if e.bk_id in by_id and w is not None and e.digest and not w.matches(by_id[e.bk_id]):
            r.drift(e)
    made = {e.bk_id for e in r.ledger.of(K.NAMESPACE)}
    free = _free(wanted, r.ledger, K.NAMESPACE, key=lambda w: w.name)
    for n in listed:
        if n.id in made:
            continue
        w = free.pop(n.name, None)
        if w is None:
            r.orphans.namespaces.append((n.id, n.name))
        else:
            r.adopt(LedgerEntry(kind=K.NAMESPACE, uid=w.uid, bk_id=n.id, name=n.name,
                                digest=w.digest if w.matches(n) else "",
                                parents={"cluster": cid}))
    await r.flush()


async def _nodes(r: _Repair, listed: list[Any], cid: int) -> None:
    by_id = {n.id: n for n in listed}
    wanted = r.desired.nodes
    r.forget(e for e in r.ledger.of(K.NODE) if e.bk_id not in by_id)
    await r.flush()
    for e in r.ledger.of(K.NODE):
        w, rec = wanted.get(e.uid), by_id.get(e.bk_id)
        if rec is not None and w is not None and e.digest and not w.matches(rec, rec.host_id):
            r.drift(e, parents={"cluster": cid, "host": rec.host_id})
    made = {e.bk_id for e in r.ledger.of(K.NODE)}
    free = _free(wanted, r.ledger, K.NODE, key=lambda w: w.name)
    for n in listed:
        if n.id in made:
            continue
        w = free.pop(n.name, None)
        if w is None:
            r.orphans.nodes.append((n.id, n.name))
        else:
            r.adopt(LedgerEntry(kind=K.NODE, uid=w.uid, bk_id=n.id, name=n.name,
                                digest=w.digest if w.matches(n, n.host_id) else "",
                                parents={"cluster": cid, "host": n.host_id}))
    await r.flush()


async def _workloads(r: _Repair, listed: list[Any]) -> None:
    by_id = {(w.kind, w.id): w for w in listed}
    kinds = (K.WORKLOAD, K.PODS_WORKLOAD)
    r.forget(e for e in r.ledger.of(*kinds) if (e.bk_kind, e.bk_id) not in by_id)
    await r.flush()
    for e in r.ledger.of(K.WORKLOAD):
        w, rec = r.desired.workloads.get(e.uid), by_id.get((e.bk_kind, e.bk_id))
        if rec is not None and w is not None and e.digest and (
                not w.matches(rec) or rec.namespace_id != e.parent("namespace")):
            r.drift(e, parents={"namespace": rec.namespace_id})
    made = {(e.bk_kind, e.bk_id) for e in r.ledger.of(*kinds)}
    free = _free(r.desired.workloads, r.ledger, K.WORKLOAD,
                 key=lambda w: (w.bk_kind, w.namespace, w.name))
    ns_names, ns_uids = r.ns_names(), r.ns_uids()
    namespaces = r.desired.namespaces
    for rec in listed:
        if (rec.kind, rec.id) in made:
            continue
        ns_name = ns_names.get(rec.namespace_id)
        ns_uid = ns_uids.get(rec.namespace_id, "")
        if rec.kind == PODS_KIND and rec.name == PODS_WORKLOAD_NAME and ns_uid in namespaces \
                and r.ledger.get(K.PODS_WORKLOAD, ns_uid) is None:
            wanted = pods_workload(namespaces[ns_uid])
            r.adopt(LedgerEntry(kind=K.PODS_WORKLOAD, uid=ns_uid, bk_id=rec.id,
                                name=rec.name, namespace=wanted.namespace, bk_kind=PODS_KIND,
                                digest=wanted.digest, parents={"namespace": rec.namespace_id}))
            continue
        w = free.pop((rec.kind, ns_name, rec.name), None) if ns_name is not None else None
        if w is None:
            r.orphans.workloads.append((rec.kind, rec.id, rec.name))
        else:
            r.adopt(LedgerEntry(kind=K.WORKLOAD, uid=w.uid, bk_id=rec.id, name=rec.name,
                                namespace=w.namespace, bk_kind=rec.kind,
                                digest=w.digest if w.matches(rec) else "",
                                parents={"namespace": rec.namespace_id}))
    await r.flush()


async def _pods(r: _Repair, listed: list[Any]) -> None:
    by_id = {p.id: p for p in listed}
    r.forget(e for e in r.ledger.of(K.POD) if e.bk_id not in by_id)
    await r.flush()
    for e in r.ledger.of(K.POD):
        p, rec = r.desired.pods.get(e.uid), by_id.get(e.bk_id)
        if rec is not None and p is not None and e.digest and not p.matches(
                rec, namespace_id=e.parent("namespace"), node_id=e.parent("node"),
                ref_kind=e.bk_kind, ref_id=e.parent("workload"), host_id=e.parent("host")):
            r.drift(e)
    made = {e.bk_id for e in r.ledger.of(K.POD)}
    free: dict[Any, WantedPod] = _free(r.desired.pods, r.ledger, K.POD,
                                       key=lambda p: (p.namespace, p.name))
    ns_names = r.ns_names()
    for rec in listed:
        if rec.id in made:
            continue
        p = free.pop((ns_names.get(rec.namespace_id), rec.name), None)
        if p is None:
            r.orphans.pods.append((rec.id, rec.name))
            continue
        parents = {"namespace": rec.namespace_id, "node": rec.node_id, "workload": rec.ref_id,
                   "host": rec.host_id}
        same = p.matches(rec, namespace_id=rec.namespace_id, node_id=rec.node_id,
                         ref_kind=rec.ref_kind, ref_id=rec.ref_id, host_id=rec.host_id)
        # the plan checks that these parents are the ones the pod should be under
        r.adopt(LedgerEntry(kind=K.POD, uid=p.uid, bk_id=rec.id, name=rec.name,
                            namespace=p.namespace, bk_kind=rec.ref_kind,
                            digest=p.digest if same else "", parents=parents))
    await r.flush()


def _free(wanted: dict[str, Any], ledger: LedgerView, kind: ObjectKind,
          key: Any) -> dict[Any, Any]:
    """Wanted values without a ledger entry, by bk-cmdb key (first uid wins)."""
    free: dict[Any, Any] = {}
    for uid in sorted(wanted):
        if ledger.get(kind, uid) is None:
            free.setdefault(key(wanted[uid]), wanted[uid])
    return free
