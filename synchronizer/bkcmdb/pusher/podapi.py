"""The push for `api: container`: each Active pod as a container-server pod under a module.

The original design's API is simpler than the kube model — one object per pod, no parents
to make first, updated in place, one request per pod — so its difference is computed and
applied in one pass here, with the same rules as the kube push: the ledger remembers each
pod's id, digest (of the `bk_pod_*` fields) and module; a push deletes the pods no Active
row wants, creates the ones the ledger lacks, and updates those whose digest or module
changed; a full reconcile lists the business's pods of the cluster first and corrects the
ledger by them (forget what vanished, mark what was edited, adopt what matches a row, delete
orphans).

Placement: the pod's set and module names (the annotations, stored in the `set_name` and
`module_name` columns) are resolved through the client's per-business topology cache, with
the `bkbcs`/`bkbcs` fallback. A business without even the fallback is one error for the
cluster (`NoDefaultModule`, in the report), and only the pods that need placing wait
(`NO_MODULE`): deletes, and pods placed already, go on — the Go original blocked the whole
cluster instead. Placement is resolved only for pods that are created or updated (and for
all of them at a full reconcile, which moves a pod whose annotated module has appeared
since), so a push with nothing new makes no request.

The pods' unique key is `(cluster, namespace, name)`. When a pod is replaced by a new one
with the same name (a StatefulSet's), the old uid's entry is forgotten rather than deleted,
and the new uid adopts and updates the object: deleting by key would delete the new pod.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import replace

from ..client import BkCmdbClient
from ..container import MODULE_ANNOTATION, SET_ANNOTATION, NoDefaultModule
from ..errors import AuthError, PermanentError
from ..types import ContainerPod
from .index import DesiredIndex
from .ledger import EntryKey, LedgerEntry, LedgerView, ObjectKind
from .mapping import WantedPod
from .report import DeadLetter, Pending, PushError, PushReport, Reason

log = logging.getLogger("synchronizer.bkcmdb.pusher")
K = ObjectKind.CONTAINER_POD


class PodApiPush:
    """One push of one cluster through the container-server pod API."""

    def __init__(self, client: BkCmdbClient, *, cluster: str, biz_id: int, ledger: LedgerView,
                 desired: DesiredIndex, report: PushReport, dead: dict[EntryKey, DeadLetter],
                 removed: bool) -> None:
        self._api = client.container
        self._cluster, self._biz = cluster, biz_id
        self._ledger, self._report, self._dead = ledger, report, dead
        self._pods: dict[str, WantedPod] = {} if removed else dict(desired.pods)
        self._bad = set() if removed else {uid for (_, uid) in desired.bad}
        self._no_module: NoDefaultModule | None = None
        self._unplaced: set[str] = set()
        self._orphans: list[ContainerPod] = []

    # -- full reconcile ---------------------------------------------------------------------------

    async def repair(self) -> None:
        """List the cluster's pods in the business and correct the ledger by them."""
        listed = await self._api.list_pods(self._biz, self._cluster)
        by_id = {p.id: p for p in listed}
        mine = [e for e in self._ledger.of(K) if e.parent("biz") == self._biz]
        gone = [e for e in mine if e.bk_id not in by_id]
        await self._ledger.remove([e.key for e in gone])
        self._report.forgotten[K] += len(gone)
        fixes = []
        for e in self._ledger.of(K):
            p, rec = self._pods.get(e.uid), by_id.get(e.bk_id)
            if rec is not None and p is not None and e.digest and not p.container_matches(
                    rec, e.parent("module")):
                fixes.append(replace(e, digest="", parents={"biz": self._biz,
                                                            "module": rec.module_id}))
                self._report.drifted[K] += 1
        made = {e.bk_id for e in self._ledger.of(K)}
        free: dict[tuple[str, str], WantedPod] = {}
        for uid in sorted(self._pods):
            if self._ledger.get(K, uid) is None:
                free.setdefault((self._pods[uid].namespace, self._pods[uid].name), self._pods[uid])
        for rec in listed:
            if rec.id in made:
                continue
            p = free.pop((rec.namespace, rec.name), None)
            if p is None:
                self._orphans.append(rec)
                continue
            fixes.append(self._entry(p, rec.id, rec.module_id,
                                     p.digest if p.container_matches(rec, rec.module_id) else ""))
            self._report.adopted[K] += 1
        await self._ledger.put(fixes)
        self._report.orphans = len(self._orphans)

    # -- the push ---------------------------------------------------------------------------------

    async def run(self, *, full: bool) -> None:
        """Delete, then create and update; a transient error propagates."""
        for rec in self._orphans:
            await self._guard(K, f"bk:{rec.id}", rec.name, "delete", "",
                              self._delete_orphan(rec))
        wanted_keys = {(p.namespace, p.name): uid for uid, p in self._pods.items()}
        for e in self._ledger.of(K):
            if e.uid in self._bad or (e.uid in self._pods and e.parent("biz") == self._biz):
                continue
            if self._dead_delete(e):
                continue
            holder = wanted_keys.get((e.namespace, e.name))
            if holder is not None and holder != e.uid and e.parent("biz") == self._biz:
                await self._ledger.remove([e.key])  # the new pod of that name takes it over
                continue
            await self._guard(K, e.uid, e.name, "delete", "", self._delete(e))
        taken = {(e.namespace, e.name): e.uid for e in self._ledger.of(K)}
        for uid in sorted(self._pods):
            p = self._pods[uid]
            entry = self._ledger.get(K, uid)
            if self._is_dead(p) or taken.get((p.namespace, p.name), uid) != uid:
                continue
            if entry is not None and entry.digest == p.digest and not full:
                continue
            module = await self._place(p)
            if module is None:
                continue
            if entry is not None and entry.digest == p.digest and \
                    entry.parent("module") == module:
                continue
            taken[(p.namespace, p.name)] = uid
            action = "create" if entry is None else "update"
            await self._guard(K, uid, p.name, action, p.digest, self._write(p, entry, module))

    async def _place(self, p: WantedPod) -> int | None:
        if self._no_module is not None and not (p.set_name and p.module_name):
            self._unplaced.add(p.uid)
            return None
        try:
            return await self._api.place(self._biz, {SET_ANNOTATION: p.set_name,
                                                     MODULE_ANNOTATION: p.module_name})
        except NoDefaultModule as exc:
            self._unplaced.add(p.uid)
            if self._no_module is None:
                self._no_module = exc
                self._report.error = PushError.of(exc, transient=False, stopped=False)
                log.error("cluster %s: %s", self._cluster, exc)
            return None

    async def _write(self, p: WantedPod, entry: LedgerEntry | None, module: int) -> None:
        fields = {**p.container_fields(), "bk_module_id": module, "bk_biz_id": self._biz}
        key = (self._cluster, p.namespace, p.name)
        if entry is not None and await self._api.update_pod(self._biz, key, fields):
            self._report.updated[K] += 1
            pod_id = entry.bk_id
        else:
            pod_id, adopted = await self._api.ensure_pod(self._biz, fields)
            if adopted:
                await self._api.update_pod(self._biz, key, fields)
            (self._report.adopted if adopted else self._report.created)[K] += 1
        await self._ledger.put([self._entry(p, pod_id, module, p.digest)])
        self._dead.pop((K, p.uid), None)

    async def _delete(self, e: LedgerEntry) -> None:
        await self._api.delete_pod(e.parent("biz") or self._biz,
                                   (self._cluster, e.namespace, e.name))
        await self._ledger.remove([e.key])
        self._report.deleted[K] += 1

    async def _delete_orphan(self, rec: ContainerPod) -> None:
        await self._api.delete_pod(self._biz, rec.key)
        self._report.deleted[K] += 1

    async def _guard(self, kind: ObjectKind, uid: str, name: str, action: str, digest: str,
                     work: Awaitable[None]) -> None:
        """Run one pod's request; a permanent refusal becomes a dead letter."""
        try:
            await work
        except AuthError:
            raise
        except PermanentError as exc:
            letter = DeadLetter(kind=kind, uid=uid, name=name, action=action, code=exc.code,
                                message=exc.message, digest=digest)
            self._dead[(kind, uid)] = letter
            self._report.dead_letters.append(letter)
            log.warning("cluster %s: %s", self._cluster, letter.line())

    # -- bookkeeping ------------------------------------------------------------------------------

    def _entry(self, p: WantedPod, pod_id: int, module: int, digest: str) -> LedgerEntry:
        return LedgerEntry(kind=K, uid=p.uid, bk_id=pod_id, digest=digest, name=p.name,
                           namespace=p.namespace, parents={"biz": self._biz, "module": module})

    def _is_dead(self, p: WantedPod) -> bool:
        letter = self._dead.get((K, p.uid))
        return letter is not None and letter.digest == p.digest

    def _dead_delete(self, e: LedgerEntry) -> bool:
        letter = self._dead.get(e.key)
        return letter is not None and letter.action == "delete"

    def pending(self) -> None:
        """Count what is not equal yet, with reasons, into the report."""
        report = self._report
        taken = {(e.namespace, e.name): e.uid for e in self._ledger.of(K)}
        for e in self._ledger.of(K):
            if e.uid in self._bad or (e.uid in self._pods and e.parent("biz") == self._biz):
                continue
            reason = Reason.DEAD_LETTER if self._dead_delete(e) else Reason.RETRY
            report.wait(Pending(kind=K, uid=e.uid, name=e.name, reason=reason, detail="delete"))
        for uid in sorted(self._pods):
            p = self._pods[uid]
            entry = self._ledger.get(K, uid)
            if entry is not None and entry.digest == p.digest:
                continue
            if self._is_dead(p):
                reason, detail = Reason.DEAD_LETTER, ""
            elif taken.get((p.namespace, p.name), uid) != uid:
                reason, detail = Reason.NAME_TAKEN, ""
            elif uid in self._unplaced and self._no_module is not None:
                reason, detail = Reason.NO_MODULE, self._no_module.message
            else:
                reason, detail = Reason.RETRY, ""
            report.wait(Pending(kind=K, uid=uid, name=p.name, reason=reason, detail=detail))
