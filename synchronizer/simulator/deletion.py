"""Deletion as apiserver and kube-controller-manager do it: finalizers, the garbage
collector, namespaces.

Why beyond "remove the key": clients depend on what happens around a delete. An object
with finalizers is only marked (`deletionTimestamp`, a MODIFIED event) and stays until an
update removes the last finalizer, which is how kopf and the product keep a SyncCluster
until they have cleaned up. Deleting an owner takes its dependents with it (the garbage
collector's background propagation): a deleted Deployment's ReplicaSets and their Pods go,
each with its own DELETED event, found through the kinds the owner's resource declares it
controls (`ResourceSpec.dependents`) by a byte search for its uid, so only candidates are
parsed. A deleted namespace turns Terminating (MODIFIED), loses every object in it, then
goes. apiserver's namespace controller would wait for the contents' own finalizers; here
they are removed outright, so a deleted namespace is gone when `delete` returns.

A mixin of `RevisionStore`: it uses the store's tables, stamping and history.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import orjson

from .resources import ResourceSpec
from .strategy import mark_deleting
from .tables import Stored, Table, split_key
from .wire import SimError

if TYPE_CHECKING:
    from .store import RevisionStore

Propagation = str
"""DeleteOptions.propagationPolicy: "Background" (the default), "Foreground" (treated as
Background) or "Orphan" (dependents are left)."""


class Deletion:
    """The delete half of `RevisionStore`."""

    def delete(self: RevisionStore, namespace: str | None, name: str, *,
               resource: str = "pods", propagation: Propagation = "Background",
               uid: str | None = None, resource_version: str | None = None
               ) -> dict[str, Any]:
        """Delete an object; returns its final state (what the event carries).

        With finalizers it is only marked (deletionTimestamp, MODIFIED) and stays until an
        update removes the last one. Otherwise it goes at once (grace period 0), and, unless
        `propagation` is "Orphan", so do the objects it controls. A namespace takes every
        object in it along. `uid` and `resource_version` are DeleteOptions preconditions
        (409 when they do not match).
        """
        table = self.table(resource)
        key = table.key(namespace, name)
        stored = table.items.get(key)
        if stored is None:
            raise table.missing(name)
        if (uid and uid != stored[1]) or (resource_version
                                          and resource_version != str(stored[2])):
            raise SimError(409, f"Precondition failed: UID in precondition: {uid}, UID in "
                           f"object meta: {stored[1]}", reason="Conflict")
        obj = orjson.loads(stored[0])
        if table.spec.id == "namespaces":
            return self._delete_namespace(table, key, obj, stored)
        if obj["metadata"].get("finalizers"):
            if mark_deleting(table.spec, obj, self._timestamp()):
                raw = self._stamp(obj)
                table.items[key] = (raw, stored[1], self._rv)
                self._record("MODIFIED", table.spec.id, key, raw, stored[0])
            return obj
        return self._remove(table, key, obj, stored, propagation)

    def force_remove(self: RevisionStore, namespace: str | None, name: str, *,
                     resource: str) -> dict[str, Any]:
        """Remove an object now, finalizers or not, dependents left (its namespace or its
        CRD is going away)."""
        table = self.table(resource)
        key = table.key(namespace, name)
        stored = table.items.get(key)
        if stored is None:
            raise table.missing(name)
        return self._remove(table, key, orjson.loads(stored[0]), stored, "Orphan")

    def _remove(self: RevisionStore, table: Table, key: str, obj: dict[str, Any],
                stored: Stored, propagation: Propagation) -> dict[str, Any]:
        del table.items[key]
        del table.order[bisect.bisect_left(table.order, key)]
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = self._timestamp()
            meta["deletionGracePeriodSeconds"] = 0
        raw = self._stamp(obj)
        self._record("DELETED", table.spec.id, key, raw, stored[0])
        if propagation != "Orphan" and table.spec.dependents:
            self._collect(table.spec, meta)
        return obj

    def _collect(self: RevisionStore, owner: ResourceSpec, meta: dict[str, Any]) -> None:
        """Delete what the deleted owner `meta` controlled, in the kinds `owner` declares."""
        for resource in owner.dependents:
            if resource not in self._tables:
                continue
            for key in self.owned_by(meta["uid"], resource, meta.get("namespace")):
                if key in self._tables[resource].items:
                    ns, name = split_key(key)
                    self.delete(ns or None, name, resource=resource)

    def owned_by(self: RevisionStore, uid: str, resource: str,
                 namespace: str | None) -> list[str]:
        """Keys of the objects of `resource` (in `namespace`, if given) that have an
        ownerReference to `uid`: a byte search first, so only candidates are parsed."""
        table = self.table(resource)
        needle = uid.encode()
        keys = table.in_namespace(namespace) if namespace and table.spec.namespaced \
            else table.order
        return [k for k in keys if needle in table.items[k][0] and any(
            ref.get("uid") == uid for ref in
            orjson.loads(table.items[k][0])["metadata"].get("ownerReferences") or ())]

    def _delete_namespace(self: RevisionStore, table: Table, key: str, obj: dict[str, Any],
                          stored: Stored) -> dict[str, Any]:
        """Terminating (MODIFIED), then every object in it removed, then the namespace."""
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = self._timestamp()
            obj.setdefault("status", {})["phase"] = "Terminating"
            raw = self._stamp(obj)
            previous = stored[0]
            table.items[key] = stored = (raw, stored[1], self._rv)
            self._record("MODIFIED", table.spec.id, key, raw, previous)
        for inner in self.tables():
            if inner.spec.namespaced:
                for k in inner.in_namespace(key):
                    inner_stored = inner.items[k]
                    self._remove(inner, k, orjson.loads(inner_stored[0]), inner_stored,
                                 "Orphan")
        obj.setdefault("spec", {})["finalizers"] = []
        return self._remove(table, key, obj, stored, "Orphan")
