"""The difference between the tables and the ledger, for `api: kube`: a pure function.

`plan(desired, ledger, ...)` answers, without a request, what must be deleted, created and
updated for bk-cmdb to equal the tables, and what cannot be done yet and why. The pusher
calls it again before each layer it applies (deletes; then namespaces, nodes, workloads,
pods), so each layer is planned from the ledger as the layer before left it: a pod is
created only once its namespace, node and workload are written down with their bk ids.

Deletes are decided top-down and applied bottom-up. An entry is *kept* when its row is
Active and its parents are kept with the bk ids it was made under; anything else is
*doomed*, and whatever hangs under a doomed entry is doomed too (bk-cmdb refuses to delete a
parent while children refer to it, and a child made under a parent that is going must be
made again under the new one). Pods are immutable in bk-cmdb, so a pod whose digest differs
is doomed and created again; namespaces, workloads and nodes are updated in place, except
a node whose internal IP now belongs to another host (`bk_host_id` is read-only), which is
doomed like a pod. Whether that host changed needs a lookup, so the plan first asks for the
IPs it must know (`lookup`) and makes no decision about those nodes until it has them.

Unique keys: bk-cmdb refuses a second object with a key in use, and the client would then
*adopt* the existing one — for two rows with the same name (a namespace deleted and made
again, whose tombstone has not reached the table yet) that would bind both uids to one
object. So each key goes to one row only: the one already in the ledger, else the first by
uid; the others wait (`NAME_TAKEN`) until the holder is gone.

A row that cannot be read (`BAD_ROW`) keeps whatever bk-cmdb holds for its uid: bad input
never deletes a live object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .desired import Table
from .index import DesiredIndex
from .ledger import EntryKey, LedgerEntry, LedgerView, ObjectKind
from .mapping import (
    PODS_KIND,
    PODS_WORKLOAD_NAME,
    WantedNamespace,
    WantedNode,
    WantedPod,
    WantedWorkload,
    digest,
)
from .report import DeadLetter, Pending, Reason

NOT_LOOKED_UP = -1
"""`hosts[ip]` before the lookup; None means "looked up, no host"."""
K = ObjectKind


@dataclass(frozen=True, slots=True, kw_only=True)
class PodCreate:
    """A pod to create, with the bk ids of everything it hangs under."""

    pod: WantedPod
    namespace_id: int
    node_id: int
    host_id: int
    ref_kind: str
    ref_id: int


@dataclass(slots=True)
class KubePlan:
    """What one layer of a push should do, and what waits."""

    cluster_id: int
    lookup: set[str] = field(default_factory=set)
    delete: dict[ObjectKind, list[LedgerEntry]] = field(default_factory=dict)
    delete_cluster: bool = False
    create_cluster: bool = False
    create_namespaces: list[WantedNamespace] = field(default_factory=list)
    update_namespaces: list[tuple[LedgerEntry, WantedNamespace]] = field(default_factory=list)
    create_nodes: list[tuple[WantedNode, int]] = field(default_factory=list)
    update_nodes: list[tuple[LedgerEntry, WantedNode]] = field(default_factory=list)
    create_workloads: list[tuple[ObjectKind, WantedWorkload, int]] = field(default_factory=list)
    update_workloads: list[tuple[LedgerEntry, WantedWorkload]] = field(default_factory=list)
    create_pods: list[PodCreate] = field(default_factory=list)
    waiting: list[Pending] = field(default_factory=list)

    def deletes(self) -> int:
        """Entries to delete."""
        return sum(len(v) for v in self.delete.values()) + int(self.delete_cluster)

    def actions(self) -> int:
        """Every action in the plan (0: bk-cmdb equals the tables, but for what waits)."""
        return (self.deletes() + int(self.create_cluster) + len(self.create_namespaces)
                + len(self.update_namespaces) + len(self.create_nodes) + len(self.update_nodes)
                + len(self.create_workloads) + len(self.update_workloads)
                + len(self.create_pods))

    def pending(self) -> list[Pending]:
        """Everything not equal yet: every action not taken, and everything waiting; one
        item per object (a pod to make again is one object, though two actions)."""
        out = list(self.waiting)
        for kind, entries in self.delete.items():
            out += [Pending(kind=kind, uid=e.uid, name=e.name, reason=Reason.RETRY,
                            detail="delete") for e in entries]
        creates: list[tuple[str, Any]] = [
            *((K.NAMESPACE, w) for w in self.create_namespaces),
            *((K.NAMESPACE, w) for _, w in self.update_namespaces),
            *((K.NODE, w) for w, _ in self.create_nodes),
            *((K.NODE, w) for _, w in self.update_nodes),
            *((kind, w) for kind, w, _ in self.create_workloads),
            *((K.WORKLOAD, w) for _, w in self.update_workloads),
            *((K.POD, c.pod) for c in self.create_pods)]
        out += [Pending(kind=kind, uid=w.uid, name=w.name, reason=Reason.RETRY)
                for kind, w in creates]
        if self.create_cluster or self.delete_cluster:
            out.append(Pending(kind=K.CLUSTER, uid="", name="", reason=Reason.RETRY))
        unique: dict[tuple[str, str], Pending] = {}
        for item in out:
            unique.setdefault((item.kind, item.uid), item)
        return list(unique.values())


def pods_workload(namespace: WantedNamespace) -> WantedWorkload:
    """The `pods` workload the product makes for a namespace's controller-less pods."""
    return WantedWorkload(uid=namespace.uid, kind="", bk_kind=PODS_KIND,
                          namespace=namespace.name, name=PODS_WORKLOAD_NAME,
                          digest=digest(["pods", namespace.name]))


class _Planner:
    """One plan; the state of one call of `plan`."""

    def __init__(self, cluster: str, desired: DesiredIndex, ledger: LedgerView, *,
                 hosts: Mapping[str, int | None], dead: Mapping[EntryKey, DeadLetter],
                 removed: bool) -> None:
        self.desired, self.ledger, self.hosts, self.dead = desired, ledger, hosts, dead
        self.removed = removed
        entry = ledger.get(K.CLUSTER, cluster)
        self.out = KubePlan(cluster_id=entry.bk_id if entry else 0)
        self.kept: dict[EntryKey, LedgerEntry] = {}
        self.bad = {t: (set() if removed else desired.bad_uids(t)) for t in Table}
        self.namespaces = {} if removed else desired.namespaces
        self.nodes = {} if removed else desired.nodes
        self.workloads = {} if removed else desired.workloads
        self.pods = {} if removed else desired.pods

    # -- helpers ----------------------------------------------------------------------------------

    def _doom(self, entry: LedgerEntry) -> None:
        letter = self.dead.get(entry.key)
        if letter is not None and letter.action == "delete":
            self.out.waiting.append(Pending(kind=entry.kind, uid=entry.uid, name=entry.name,
                                            reason=Reason.DEAD_LETTER, detail="delete"))
            self._keep(entry)  # bk-cmdb refused: it stays, and so do its parents
        else:
            self.out.delete.setdefault(entry.kind, []).append(entry)

    def _keep(self, entry: LedgerEntry) -> None:
        self.kept[entry.key] = entry

    def _is_dead(self, kind: ObjectKind, uid: str, wanted_digest: str) -> bool:
        letter = self.dead.get((kind, uid))
        return letter is not None and letter.digest == wanted_digest

    def _wait(self, kind: ObjectKind, wanted: Any, reason: Reason, detail: str = "") -> None:
        self.out.waiting.append(Pending(kind=kind, uid=wanted.uid, name=wanted.name,
                                        reason=reason, detail=detail))

    def _by_name(self, kind: ObjectKind, wanted: Mapping[str, Any],
                 key: Any = lambda w: w.name) -> dict[Any, Any]:
        """Wanted values by bk-cmdb key: the one kept in the ledger first, else by uid."""
        chosen: dict[Any, Any] = {}
        for uid, w in wanted.items():
            if (kind, uid) in self.kept:
                chosen[key(w)] = w
        for uid in sorted(wanted):
            chosen.setdefault(key(wanted[uid]), wanted[uid])
        return chosen

    # -- deletes, top-down ------------------------------------------------------------------------

    def decide(self) -> None:
        cid = self.out.cluster_id
        for e in self.ledger.of(K.NAMESPACE):
            if e.uid in self.bad[Table.NAMESPACES] or (
                    e.uid in self.namespaces and e.parent("cluster") == cid):
                self._keep(e)
            else:
                self._doom(e)
        for e in self.ledger.of(K.NODE):
            self._decide_node(e, cid)
        self.ns_by_name = self._by_name(K.NAMESPACE, self.namespaces)
        for e in self.ledger.of(K.WORKLOAD):
            w = self.workloads.get(e.uid)
            if e.uid in self.bad[Table.WORKLOADS] or (
                    w is not None and self._kept_id(K.NAMESPACE, self._ns_uid(w.namespace))
                    == e.parent("namespace")):
                self._keep(e)
            else:
                self._doom(e)
        self.wl_by_key = self._by_name(K.WORKLOAD, self.workloads,
                                       key=lambda w: (w.kind, w.namespace, w.name))
        self.node_by_name = self._by_name(K.NODE, self.nodes)
        refs = [self._resolve(p) for p in self.pods.values() if self._placeable(p)]
        self.need_pods_wl = {uid for kind, uid, _ in refs if kind is K.PODS_WORKLOAD and uid}
        for e in self.ledger.of(K.PODS_WORKLOAD):
            if e.uid in self.need_pods_wl and self._kept_id(K.NAMESPACE, e.uid) \
                    == e.parent("namespace"):
                self._keep(e)
            else:
                self._doom(e)
        for e in self.ledger.of(K.POD):
            self._decide_pod(e)
        if self.removed and self.out.cluster_id and not self.kept:
            self.out.delete_cluster = True

    def _decide_node(self, e: LedgerEntry, cid: int) -> None:
        w = self.nodes.get(e.uid)
        if e.uid in self.bad[Table.NODES]:
            self._keep(e)
        elif w is None or e.parent("cluster") != cid:
            self._doom(e)
        elif w.digest == e.digest or self._is_dead(K.NODE, w.uid, w.digest):
            self._keep(e)
        else:
            host = self.hosts.get(w.internal_ip, NOT_LOOKED_UP) if w.internal_ip else None
            if host == NOT_LOOKED_UP:
                self.out.lookup.add(w.internal_ip)
                self._keep(e)  # undecided until the lookup: keeps its pods for now
            elif host is None or host != e.parent("host"):
                self._doom(e)
            else:
                self._keep(e)
                self.out.update_nodes.append((e, w))

    def _placeable(self, p: WantedPod) -> bool:
        """Whether the pod is, or can now be, in bk-cmdb (so its `pods` workload is needed:
        the product makes one only for a namespace with such a pod)."""
        if not p.started or not p.node_name:
            return False
        node = self.node_by_name.get(p.node_name)
        if node is None:
            return False
        if (K.NODE, node.uid) in self.kept:
            return True
        return bool(node.internal_ip) and self.hosts.get(node.internal_ip,
                                                         NOT_LOOKED_UP) is not None

    def _ns_uid(self, name: str) -> str:
        ns = self.ns_by_name.get(name)
        return ns.uid if ns is not None else ""

    def _kept_id(self, kind: ObjectKind, uid: str) -> int:
        entry = self.kept.get((kind, uid))
        return entry.bk_id if entry is not None else -1

    def _resolve(self, p: WantedPod) -> tuple[ObjectKind, str, str]:
        """(ledger kind, uid, bk kind) of the workload the pod goes under."""
        w = self.wl_by_key.get((p.workload_kind, p.namespace, p.workload_name)) \
            if p.workload_kind else None
        if w is not None:
            return K.WORKLOAD, w.uid, w.bk_kind
        return K.PODS_WORKLOAD, self._ns_uid(p.namespace), PODS_KIND

    def _parents(self, p: WantedPod) -> tuple[int, int, int, str, int] | None:
        """(namespace id, node id, host id, ref kind, ref id) from kept entries, or None."""
        ns = self.kept.get((K.NAMESPACE, self._ns_uid(p.namespace)))
        node_w = self.node_by_name.get(p.node_name) if p.node_name else None
        node = self.kept.get((K.NODE, node_w.uid)) if node_w is not None else None
        kind, uid, bk_kind = self._resolve(p)
        ref = self.kept.get((kind, uid))
        if ns is None or node is None or ref is None:
            return None
        return ns.bk_id, node.bk_id, node.parent("host"), bk_kind, ref.bk_id

    def _decide_pod(self, e: LedgerEntry) -> None:
        p = self.pods.get(e.uid)
        if e.uid in self.bad[Table.PODS]:
            self._keep(e)
            return
        if p is None or p.digest != e.digest:
            self._doom(e)
            return
        made = (e.parent("namespace"), e.parent("node"), e.parent("host"), e.bk_kind,
                e.parent("workload"))
        if self._parents(p) == made:
            self._keep(e)
        else:
            self._doom(e)

    # -- creates and updates, top-down ------------------------------------------------------------

    def build(self) -> None:
        self.decide()
        cid = self.out.cluster_id
        if self.removed:
            return
        if not cid:
            self.out.create_cluster = True
        self._namespaces(cid)
        self._nodes(cid)
        self._workloads()
        self._pods()

    def _taken(self, kinds: Iterable[ObjectKind], key: Any) -> set[Any]:
        return {key(e) for e in self.kept.values() if e.kind in kinds}

    def _namespaces(self, cid: int) -> None:
        taken = self._taken([K.NAMESPACE], lambda e: e.name)
        for uid in sorted(self.namespaces):
            w = self.namespaces[uid]
            entry = self.kept.get((K.NAMESPACE, uid))
            if entry is not None:
                if entry.digest != w.digest and not self._is_dead(K.NAMESPACE, uid, w.digest):
                    self.out.update_namespaces.append((entry, w))
            elif self._is_dead(K.NAMESPACE, uid, w.digest):
                self._wait(K.NAMESPACE, w, Reason.DEAD_LETTER)
            elif w.name in taken:
                self._wait(K.NAMESPACE, w, Reason.NAME_TAKEN)
            elif not cid:
                self._wait(K.NAMESPACE, w, Reason.RETRY, "after its cluster")
            else:
                taken.add(w.name)
                self.out.create_namespaces.append(w)
        self._dead_updates(K.NAMESPACE, self.namespaces)

    def _dead_updates(self, kind: ObjectKind, wanted: Mapping[str, Any]) -> None:
        for uid, w in wanted.items():
            entry = self.kept.get((kind, uid))
            if entry is not None and entry.digest != w.digest and self._is_dead(kind, uid,
                                                                                  w.digest):
                self._wait(kind, w, Reason.DEAD_LETTER)

    def _nodes(self, cid: int) -> None:
        taken = self._taken([K.NODE], lambda e: e.name)
        for uid in sorted(self.nodes):
            w = self.nodes[uid]
            if (K.NODE, uid) in self.kept:
                continue
            if self._is_dead(K.NODE, uid, w.digest):
                self._wait(K.NODE, w, Reason.DEAD_LETTER)
                continue
            if not w.internal_ip:
                self._wait(K.NODE, w, Reason.NO_HOST, "the node has no internal IP")
                continue
            host = self.hosts.get(w.internal_ip, NOT_LOOKED_UP)
            if host == NOT_LOOKED_UP:
                self.out.lookup.add(w.internal_ip)
                self._wait(K.NODE, w, Reason.RETRY, "host lookup")
            elif host is None:
                self._wait(K.NODE, w, Reason.NO_HOST,
                           f"no host with inner IP {w.internal_ip} in the cluster's business")
            elif w.name in taken:
                self._wait(K.NODE, w, Reason.NAME_TAKEN)
            elif not cid:
                self._wait(K.NODE, w, Reason.RETRY, "after its cluster")
            else:
                taken.add(w.name)
                self.out.create_nodes.append((w, host))
        self._dead_updates(K.NODE, self.nodes)

    def _workloads(self) -> None:
        taken = self._taken([K.WORKLOAD, K.PODS_WORKLOAD],
                            lambda e: (e.bk_kind, e.parent("namespace"), e.name))
        wanted: list[tuple[ObjectKind, WantedWorkload]] = [
            (K.WORKLOAD, self.workloads[uid]) for uid in sorted(self.workloads)]
        wanted += [(K.PODS_WORKLOAD, pods_workload(self.namespaces[uid]))
                   for uid in sorted(self.need_pods_wl) if uid in self.namespaces]
        for kind, w in wanted:
            entry = self.kept.get((kind, w.uid))
            if entry is not None:
                if entry.digest != w.digest and not self._is_dead(kind, w.uid, w.digest):
                    self.out.update_workloads.append((entry, w))
                continue
            ns = self.ns_by_name.get(w.namespace)
            ns_entry = self.kept.get((K.NAMESPACE, ns.uid)) if ns is not None else None
            if self._is_dead(kind, w.uid, w.digest):
                self._wait(kind, w, Reason.DEAD_LETTER)
            elif ns is None:
                self._wait(kind, w, Reason.NO_NAMESPACE)
            elif ns_entry is None:
                self._wait(kind, w, Reason.RETRY, "after its namespace")
            elif (w.bk_kind, ns_entry.bk_id, w.name) in taken:
                self._wait(kind, w, Reason.NAME_TAKEN)
            else:
                taken.add((w.bk_kind, ns_entry.bk_id, w.name))
                self.out.create_workloads.append((kind, w, ns_entry.bk_id))
        self._dead_updates(K.WORKLOAD, self.workloads)

    def _pods(self) -> None:
        taken = self._taken([K.POD], lambda e: (e.bk_kind, e.parent("workload"), e.name))
        for uid in sorted(self.pods):
            p = self.pods[uid]
            if (K.POD, uid) in self.kept:
                continue
            reason = self._pod_wait(p)
            if reason is not None:
                self._wait(K.POD, p, *reason)
                continue
            parents = self._parents(p)
            assert parents is not None
            ns_id, node_id, host_id, ref_kind, ref_id = parents
            if (ref_kind, ref_id, p.name) in taken:
                self._wait(K.POD, p, Reason.NAME_TAKEN)
                continue
            taken.add((ref_kind, ref_id, p.name))
            self.out.create_pods.append(PodCreate(pod=p, namespace_id=ns_id, node_id=node_id,
                                                  host_id=host_id, ref_kind=ref_kind,
                                                  ref_id=ref_id))

    def _pod_wait(self, p: WantedPod) -> tuple[Reason, str] | None:
        if self._is_dead(K.POD, p.uid, p.digest):
            return Reason.DEAD_LETTER, ""
        if not p.started:
            return Reason.NOT_STARTED, ""
        if not p.node_name:
            return Reason.NO_NODE, "not scheduled"
        node = self.node_by_name.get(p.node_name)
        if node is None:
            return Reason.NO_NODE, f"node {p.node_name!r} is not in the tables"
        if (K.NODE, node.uid) not in self.kept:
            host = self.hosts.get(node.internal_ip, NOT_LOOKED_UP) if node.internal_ip else None
            if host is None:
                return Reason.NO_NODE, f"node {p.node_name!r} has no host"
            return Reason.RETRY, "after its node"
        if self._ns_uid(p.namespace) == "":
            return Reason.NO_NAMESPACE, ""
        if self._parents(p) is None:
            return Reason.RETRY, "after its namespace and workload"
        return None


def plan(cluster: str, desired: DesiredIndex, ledger: LedgerView, *,
         hosts: Mapping[str, int | None], dead: Mapping[EntryKey, DeadLetter],
         removed: bool = False) -> KubePlan:
    """The difference between `desired` and `ledger` for one cluster (pure, no requests)."""
    planner = _Planner(cluster, desired, ledger, hosts=hosts, dead=dead, removed=removed)
    planner.build()
    return planner.out
