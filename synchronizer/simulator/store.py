"""The revisioned object store under a simulated cluster: what etcd is to apiserver.

Why it is shaped like etcd: the synchronizer's correctness rests on resourceVersion
semantics, so the store keeps them exactly: one integer counter per cluster, shared by
every kind, bumped by every create, update and delete (a Node heartbeat moves it, and a Pod
watch's bookmarks move past it); one append-only history where the event with revision r
sits at position r - compacted - 1 (so "the events after N" is a slice, which a watch then
filters for its own resource); compaction that forgets history up to a revision, for all
kinds at once; and snapshots of one resource at a revision, frozen for paged lists or
rebuilt by undoing the retained history.

Objects are stored only as their serialised JSON bytes (one `orjson.dumps` per version,
shared by lists, watches and history), one `Table` per resource, keyed `namespace/name`
(or `name` for cluster-scoped kinds); this keeps 100,000 Pods in well under a GB and makes a
list page a single bytes join. A write parses, changes and re-serialises one object.

The rules apiserver applies to a write (status subresource, generation, finalizers) live
in `strategy`; deletion, with finalizers, the garbage collector and namespaces, in
`deletion`.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from .deletion import Deletion
from .resources import Registry, ResourceSpec
from .snapshots import Snapshot, reconstruct
from .strategy import Part, prepare_create, prepare_update
from .tables import Stored, Table, split_key
from .wire import SimError, json_patch, merge_patch, no_such_resource

ObjectFn = Callable[[dict[str, Any]], object]
"""Changes an object copy in place (any return value ignored) or returns a replacement."""
PodFn = ObjectFn
History = tuple[str, str, str, bytes, bytes | None]
"""(event type, resource id, key, object bytes at that revision, previous bytes or None);
an empty type is a revision of something not stored here (see `advance`)."""


def utcnow() -> datetime:
    """The default wall clock: aware UTC."""
    return datetime.now(UTC)


class RevisionStore(Deletion):
    """Objects of every served resource, one revision counter, history and snapshots."""

    def __init__(
        self,
        *,
        history_limit: int | None = 100_000,
        max_snapshots: int = 8,
        start_rv: int = 1,
        seed: int | None = None,
        now: Callable[[], datetime] = utcnow,
        resources: Registry | None = None,
    ) -> None:
        self.history_limit = history_limit
        """Events kept before old history is compacted automatically (None: never)."""
        self.max_snapshots = max_snapshots
        """Frozen list snapshots kept per resource; an evicted one is rebuilt if needed."""
        self.now = now
        """Wall clock for creation and deletion timestamps (injectable)."""
        self.resources = resources or Registry()
        """The resources served (built-ins and installed CRDs)."""
        self._rng = random.Random(seed)
        self._rv = start_rv
        self._compacted = start_rv
        self._log: list[History] = []
        self._tables: dict[str, Table] = {}
        self._aliases: dict[str, Table] = {}

    # -- tables -----------------------------------------------------------------------------

    def table(self, resource: str = "pods") -> Table:
        """The table of a resource by any of its names; a 404 SimError if none is served."""
        table = self._aliases.get(resource)
        if table is None:
            try:
                spec = self.resources.resolve(resource)
            except KeyError:
                raise no_such_resource() from None
            table = self._tables.get(spec.id)
            if table is None:
                table = self._tables[spec.id] = Table(spec)
            table.spec = spec
            self._aliases[resource] = table
        return table

    def tables(self) -> list[Table]:
        """Every table that was ever used, in resource id order."""
        return [self._tables[k] for k in sorted(self._tables)]

    def refresh_tables(self) -> None:
        """Re-resolve resource names after the registry changed (a CRD came or went)."""
        self._aliases.clear()
        for rid, table in self._tables.items():
            if rid in self.resources:
                table.spec = self.resources.resolve(rid)

    def drop_table(self, resource_id: str) -> None:
        """Forget a resource's table (its CRD is gone); its objects must be removed first."""
        table = self._tables.pop(resource_id, None)
        self._aliases = {k: t for k, t in self._aliases.items() if t is not table}

    # -- reading ----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The latest revision (of the last create, update or delete of any kind)."""
        return self._rv

    @property
    def compacted(self) -> int:
        """History at or below this revision is forgotten: older resumes get 410."""
        return self._compacted

    def __len__(self) -> int:
        return len(self.table("pods").items)

    def count(self, resource: str = "pods") -> int:
        """Live objects of one resource."""
        return len(self.table(resource).items)

    def counts(self) -> dict[str, int]:
        """Live objects per resource id, for every resource that has any."""
        return {t.spec.id: len(t.items) for t in self.tables() if t.items}

    def sorted_keys(self, resource: str = "pods") -> Sequence[str]:
        """Every key of a resource, sorted as etcd orders keys (do not mutate)."""
        return self.table(resource).order

    def get(self, namespace: str | None, name: str, *,
            resource: str = "pods") -> dict[str, Any] | None:
        """A fresh copy of the object, or None."""
        raw = self.get_raw(namespace, name, resource=resource)
        return None if raw is None else orjson.loads(raw)

    def get_raw(self, namespace: str | None, name: str, *, resource: str = "pods") -> bytes | None:
        """The object's JSON exactly as served."""
        table = self.table(resource)
        stored = table.items.get(table.key(namespace, name))
        return None if stored is None else stored[0]

    def objects(self, resource: str = "pods", namespace: str | None = None
                ) -> list[dict[str, Any]]:
        """Fresh copies of every object (in key order); parses them all, so mind the size."""
        table = self.table(resource)
        keys = table.in_namespace(namespace) if namespace and table.spec.namespaced \
            else table.order
        return [orjson.loads(table.items[k][0]) for k in keys]

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Fresh copies of every Pod (in key order)."""
        return self.objects("pods", namespace)

    def truth(self, resource: str = "pods", *, objects: bool = False) -> list[dict[str, Any]]:
        """Every live object as uid, namespace ("" when cluster-scoped), name, rv and, with
        `objects`, the object itself: the ground truth for oracles."""
        table = self.table(resource)
        out = []
        for key in table.order:
            raw, uid, rv = table.items[key]
            ns, name = split_key(key)
            entry: dict[str, Any] = {"uid": uid, "namespace": ns, "name": name, "rv": rv}
            if objects:
                entry["object"] = orjson.loads(raw)
            out.append(entry)
        return out

    def random_key(self, rng: random.Random, resource: str = "pods") -> tuple[str, str] | None:
        """A uniformly chosen (namespace, name) of a live object, or None when empty."""
        order = self.table(resource).order
        if not order:
            return None
        return split_key(order[rng.randrange(len(order))])

    def history(self, after: int, upto: int, resource: str = "pods"
                ) -> list[tuple[str, str, bytes]]:
        """(type, key, object bytes) of one resource's events with after < revision <= upto.

        `resource` may be the id of a resource no longer served (a watch draining the
        DELETED events of a removed CRD)."""
        table = self._aliases.get(resource) or self._tables.get(resource)
        rid = table.spec.id if table is not None else (
            self.table(resource).spec.id if resource in self.resources else resource)
        lo, hi = after - self._compacted, upto - self._compacted
        return [(kind, key, raw) for kind, res, key, raw, _ in self._log[lo:hi]
                if kind and res == rid]

    # -- writing ----------------------------------------------------------------------------

    def _stamp(self, obj: dict[str, Any]) -> bytes:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return orjson.dumps(obj)

    def _record(self, kind: str, resource: str, key: str, raw: bytes, prev: bytes | None) -> None:
        self._log.append((kind, resource, key, raw, prev))
        self._after_change()

    def advance(self, revisions: int = 1) -> int:
        """Bump the revision as if something not stored here changed; no event is made.

        In a real cluster the revision is shared by every kind (Leases, Events, ...), so a
        quiet watch sees bookmarks whose version runs ahead of its last event; this is how
        a test makes that happen without touching a stored kind. Returns the new revision.
        """
        for _ in range(revisions):
            self._rv += 1
            self._log.append(("", "", "", b"", None))
        if revisions > 0:
            self._after_change()
        return self._rv

    def _timestamp(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def new_uid(self) -> str:
        """A fresh uid from the cluster's seeded generator (for objects made up front)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _prepare_new(self, table: Table, obj: dict[str, Any], namespace: str | None,
                     created: str, *, copy: bool = True, part: Part = "all",
                     uid: str | None = None) -> tuple[str, dict[str, Any]]:
        spec = table.spec
        new = orjson.loads(orjson.dumps(obj)) if copy else dict(obj)
        meta = new["metadata"] = dict(new.get("metadata") or {})
        new.setdefault("kind", spec.kind)
        new.setdefault("apiVersion", spec.api_version)
        if spec.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise SimError(422, f"{spec.kind} is invalid: metadata.name: Required value")
            meta["name"] = meta["generateName"] + "".join(
                self._rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        meta["uid"] = uid or self.new_uid()
        meta["creationTimestamp"] = created
        key = table.key(meta.get("namespace"), meta["name"])
        if key in table.items:
            what = f"{spec.plural}.{spec.group}" if spec.group else spec.plural
            raise SimError(409, f'{what} "{meta["name"]}" already exists',
                           reason="AlreadyExists",
                           details={"name": meta["name"], "group": spec.group,
                                    "kind": spec.plural})
        prepare_create(spec, new, part)
        return key, new

    def create(self, obj: dict[str, Any], *, namespace: str | None = None,
               resource: str = "pods", part: Part = "all", uid: str | None = None
               ) -> dict[str, Any]:
        """Create an object (fresh uid, creationTimestamp, next revision); 409 if it exists.

        `part="main"` is an HTTP create (the client's status is not taken); `uid` lets the
        simulator's own callers fix a uid (the kube-system namespace's is the incarnation).
        """
        table = self.table(resource)
        key, new = self._prepare_new(table, obj, namespace, self._timestamp(), part=part,
                                     uid=uid)
        raw = self._stamp(new)
        table.items[key] = (raw, new["metadata"]["uid"], self._rv)
        bisect.insort(table.order, key)
        self._record("ADDED", table.spec.id, key, raw, None)
        return new

    def create_many(self, objs: Iterable[dict[str, Any]], *, copy: bool = True,
                    resource: str = "pods") -> int:
        """Create many objects at once (one ADDED event each); faster than `create`.

        `copy=False` skips the defensive deep copy: the caller hands over objects it will
        not touch again (only their top level and metadata are replaced, never mutated).
        """
        table = self.table(resource)
        rid, items, order, log = table.spec.id, table.items, table.order, self._log
        n, created = 0, self._timestamp()
        for obj in objs:
            key, new = self._prepare_new(table, obj, None, created, copy=copy)
            raw = self._stamp(new)
            items[key] = (raw, new["metadata"]["uid"], self._rv)
            order.append(key)
            log.append(("ADDED", rid, key, raw, None))
            n += 1
        order.sort()
        if n:
            self._after_change()
        return n

    def _after_change(self) -> None:
        if self.history_limit is not None and len(self._log) > self.history_limit * 1.1:
            self.compact(self._rv - self.history_limit, snapshots=False)
        self._changed()

    def _changed(self) -> None:
        """Hook: history grew or was compacted (the cluster wakes its watches here)."""

    def update(self, namespace: str | None, name: str, change: ObjectFn | dict[str, Any], *,
               resource: str = "pods", part: Part = "all") -> dict[str, Any]:
        """Replace an object, from a new object or a function of a copy (in place or
        returned).

        As in apiserver: uid, name, namespace and creationTimestamp cannot change; an
        object carrying a stale resourceVersion is a 409 Conflict; an update that changes
        nothing is a no-op (no new revision, no event); `strategy` decides what `part`
        may change; the write that removes the last finalizer of an object being deleted
        deletes it.
        """
        table = self.table(resource)
        spec = table.spec
        key = table.key(namespace, name)
        stored = table.items.get(key)
        if stored is None:
            raise table.missing(name)
        if callable(change):
            # Derived from the stored copy, so key order is kept and bytes compare exactly:
            # one parse per update on the fast path (no strategy needs the old object),
            # which is what lets churn run at thousands per second.
            fast = (part == "all" and not spec.generation and spec.schema is None
                    and spec.id != "secrets" and b'"deletionTimestamp"' not in stored[0])
            new = orjson.loads(stored[0])
            old = None if fast else orjson.loads(stored[0])
            created = new["metadata"].get("creationTimestamp")
            result = change(new)
            new = result if isinstance(result, dict) else new
        else:
            new = orjson.loads(orjson.dumps(change))
            old = orjson.loads(stored[0])
            created = old["metadata"].get("creationTimestamp")
        meta = new["metadata"] = dict(new.get("metadata") or {})
        self._precondition(spec, name, stored, meta.get("resourceVersion"))
        if not spec.unconditional_update and part != "all" and not callable(change) \
                and not meta.get("resourceVersion"):
            raise SimError(422, f'{spec.kind}.{spec.group} "{name}" is invalid: '
                           "metadata.resourceVersion: Invalid value: 0x0: must be specified "
                           "for an update")
        meta.update(uid=stored[1], name=name, creationTimestamp=created,
                    resourceVersion=str(stored[2]))
        if spec.namespaced:
            meta["namespace"] = namespace or "default"
        else:
            meta.pop("namespace", None)
        if old is not None:
            new = prepare_update(spec, old, new, part)
            if new == old:
                return new
        elif orjson.dumps(new) == stored[0]:
            return new
        final = new["metadata"]
        if final.get("deletionTimestamp") and not final.get("finalizers"):
            return self._remove(table, key, new, stored, "Background")
        raw = self._stamp(new)
        table.items[key] = (raw, stored[1], self._rv)
        self._record("MODIFIED", spec.id, key, raw, stored[0])
        return new

    @staticmethod
    def _precondition(spec: ResourceSpec, name: str, stored: Stored, sent: Any) -> None:
        if sent not in (None, "") and sent != str(stored[2]):
            what = f"{spec.plural}.{spec.group}" if spec.group else spec.plural
            raise SimError(409, f'Operation cannot be fulfilled on {what} "{name}": the '
                           "object has been modified; please apply your changes to the "
                           "latest version and try again", reason="Conflict",
                           details={"name": name, "group": spec.group, "kind": spec.plural})

    def merge_patch(self, namespace: str | None, name: str, patch: dict[str, Any], *,
                    resource: str = "pods", part: Part = "all") -> dict[str, Any]:
        """Apply an RFC 7386 merge patch; a resourceVersion in it is a precondition."""
        if not isinstance(patch, dict):
            raise SimError(400, "a merge patch must be a JSON object")
        return self.update(namespace, name, lambda obj: merge_patch(obj, patch),
                           resource=resource, part=part)

    def json_patch(self, namespace: str | None, name: str, ops: list[Any], *,
                   resource: str = "pods", part: Part = "all") -> dict[str, Any]:
        """Apply an RFC 6902 JSON patch (a failed `test` op is a 422, as in apiserver)."""
        return self.update(namespace, name, lambda obj: json_patch(obj, ops),
                           resource=resource, part=part)

    def changes(self, after: int) -> dict[str, int]:
        """Events per resource id with a revision above `after` (within retained history):
        what a burst of writes did, cascades included."""
        out: dict[str, int] = {}
        for kind, res, *_ in self._log[max(0, after - self._compacted):]:
            if kind:
                out[res] = out.get(res, 0) + 1
        return out

    # -- history ----------------------------------------------------------------------------

    def compact(self, upto: int | None = None, *, snapshots: bool = True) -> int:
        """Forget history at or below `upto` (default: everything so far); returns the point.

        Older watch resumes of every kind then get 410, and so do continue tokens of older
        lists, unless `snapshots=False` (the automatic trim to `history_limit`, which stands
        in for etcd's five-minute compaction window and so should not cut short a list that
        is still paging through a retained snapshot).
        """
        upto = self._rv if upto is None else min(max(upto, self._compacted), self._rv)
        del self._log[: upto - self._compacted]
        self._compacted = upto
        if snapshots:
            for table in self._tables.values():
                for rv in [rv for rv in table.snapshots if rv < upto]:
                    del table.snapshots[rv]
        self._changed()
        return upto

    def retained(self, rv: int, resource: str = "pods") -> bool:
        """Whether a list at `rv` can still be continued: in history, or a kept snapshot."""
        return rv >= self._compacted or rv in self.table(resource).snapshots

    def snapshot_at(self, rv: int, resource: str = "pods") -> Snapshot:
        """One resource's state at revision `rv` (retained history), kept for later pages."""
        table = self.table(resource)
        snap = table.snapshots.get(rv)
        if snap is not None:
            table.snapshots.move_to_end(rv)
            return snap
        items = {k: v[0] for k, v in table.items.items()}
        if rv < self._rv:
            reconstruct(items, self._log[rv - self._compacted:], table.spec.id)
            order = sorted(items)
        else:
            order = list(table.order)
        snap = Snapshot(rv=rv, order=order, items=items)
        table.snapshots[rv] = snap
        while len(table.snapshots) > self.max_snapshots:
            table.snapshots.popitem(last=False)
        return snap

    def _restamp(self, start_rv: int, kube_system_uid: str | None = None) -> None:
        """Forget all history and re-stamp every object with revisions from `start_rv`
        (the kube-system namespace, if stored, takes `kube_system_uid`)."""
        self._rv = start_rv
        self._log.clear()
        for table in self.tables():
            table.snapshots.clear()
            for key in table.order:
                obj = orjson.loads(table.items[key][0])
                if kube_system_uid and table.spec.id == "namespaces" and key == "kube-system":
                    obj["metadata"]["uid"] = kube_system_uid
                raw = self._stamp(obj)
                table.items[key] = (raw, obj["metadata"]["uid"], self._rv)
        self._compacted = self._rv
