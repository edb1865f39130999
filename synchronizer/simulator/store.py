"""The revisioned Pod store under a simulated cluster: what etcd is to apiserver.

Why it is shaped like etcd: the synchronizer's correctness rests on resourceVersion
semantics, so the store keeps them exactly: one integer counter per cluster bumped by every
create, update and delete; an append-only history where the event with revision r sits at
position r - compacted - 1 (so "the events after N" is a slice); compaction that forgets
history up to a revision; and snapshots of the whole state at a revision, frozen for paged
lists or rebuilt by undoing the retained history.

Pods are stored only as their serialised JSON bytes (one `orjson.dumps` per version, shared
by lists, watches and history), which keeps 100,000 Pods in well under a GB and makes a list
page a single bytes join. A mutation parses, changes and re-serialises one Pod.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from .snapshots import Snapshot, reconstruct
from .wire import SimError, merge_patch, not_found

PodFn = Callable[[dict[str, Any]], object]
"""Changes a Pod copy in place (any return value ignored) or returns a replacement dict."""
History = tuple[str, str, bytes, bytes | None]
"""(event type, key "ns/name", object bytes at that revision, previous bytes or None)."""


def utcnow() -> datetime:
    """The default wall clock: aware UTC."""
    return datetime.now(UTC)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class RevisionStore:
    """Pods by `namespace/name` with a revision counter, history and snapshots."""

    def __init__(
        self,
        *,
        history_limit: int | None = 100_000,
        max_snapshots: int = 8,
        start_rv: int = 1,
        seed: int | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.history_limit = history_limit
        """Events kept before old history is compacted automatically (None: never)."""
        self.max_snapshots = max_snapshots
        """Frozen list snapshots kept; an evicted one is rebuilt from history if needed."""
        self.now = now
        """Wall clock for creation and deletion timestamps (injectable)."""
        self._rng = random.Random(seed)
        self._rv = start_rv
        self._compacted = start_rv
        self._log: list[History] = []
        self._pods: dict[str, tuple[bytes, str, int]] = {}
        self._order: list[str] = []
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()

    # -- reading ----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The latest revision (of the last create, update or delete)."""
        return self._rv

    @property
    def compacted(self) -> int:
        """History at or below this revision is forgotten: older resumes get 410."""
        return self._compacted

    def __len__(self) -> int:
        return len(self._pods)

    def sorted_keys(self) -> Sequence[str]:
        """Every `namespace/name`, sorted as etcd orders keys (do not mutate)."""
        return self._order

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A fresh copy of the Pod, or None."""
        stored = self._pods.get(_key(namespace, name))
        return None if stored is None else orjson.loads(stored[0])

    def get_raw(self, namespace: str, name: str) -> bytes | None:
        """The Pod's JSON exactly as served."""
        stored = self._pods.get(_key(namespace, name))
        return None if stored is None else stored[0]

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Fresh copies of every Pod (in key order); parses them all, so mind the size."""
        return [orjson.loads(self._pods[k][0]) for k in self._order
                if namespace is None or k.startswith(namespace + "/")]

    def truth(self) -> list[dict[str, Any]]:
        """Every live Pod as uid, namespace, name, rv: the ground truth for oracles."""
        out = []
        for k in self._order:
            _, uid, rv = self._pods[k]
            ns, _, name = k.partition("/")
            out.append({"uid": uid, "namespace": ns, "name": name, "rv": rv})
        return out

    def random_key(self, rng: random.Random) -> tuple[str, str] | None:
        """A uniformly chosen (namespace, name) of a live Pod, or None when empty."""
        if not self._order:
            return None
        ns, _, name = self._order[rng.randrange(len(self._order))].partition("/")
        return ns, name

    def history(self, after: int, upto: int) -> list[tuple[str, str, bytes]]:
        """(type, key, object bytes) of the Pod events with after < revision <= upto."""
        lo, hi = after - self._compacted, upto - self._compacted
        return [(kind, key, raw) for kind, key, raw, _ in self._log[lo:hi] if kind]

    # -- writing ----------------------------------------------------------------------------

    def _stamp(self, obj: dict[str, Any]) -> tuple[bytes, str]:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return orjson.dumps(obj), obj["metadata"]["uid"]

    def _record(self, kind: str, key: str, raw: bytes, prev: bytes | None) -> None:
        self._log.append((kind, key, raw, prev))
        self._after_change()

    def advance(self, revisions: int = 1) -> int:
        """Bump the revision as if other resource kinds changed; no Pod event is made.

        In a real cluster the revision is shared by every kind (Leases, Events, ...), so a
        quiet Pod watch sees bookmarks whose version runs ahead of the last Pod event; this
        is how a test makes that happen. Returns the new revision.
        """
        for _ in range(revisions):
            self._rv += 1
            self._log.append(("", "", b"", None))
        if revisions > 0:
            self._after_change()
        return self._rv

    def _timestamp(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _new_uid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _prepare_new(self, pod: dict[str, Any], namespace: str | None, created: str,
                     copy: bool = True) -> tuple[str, dict[str, Any]]:
        obj = orjson.loads(orjson.dumps(pod)) if copy else dict(pod)
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
        obj.setdefault("kind", "Pod")
        obj.setdefault("apiVersion", "v1")
        meta["namespace"] = namespace or meta.get("namespace") or "default"
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise SimError(422, "Pod is invalid: metadata.name: Required value")
            meta["name"] = meta["generateName"] + "".join(
                self._rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        meta["uid"] = self._new_uid()
        meta["creationTimestamp"] = created
        key = _key(meta["namespace"], meta["name"])
        if key in self._pods:
            raise SimError(409, f'pods "{meta["name"]}" already exists', reason="AlreadyExists",
                           details={"name": meta["name"], "kind": "pods"})
        return key, obj

    def create(self, pod: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create a Pod (fresh uid, creationTimestamp, next revision); 409 if it exists."""
        key, obj = self._prepare_new(pod, namespace, self._timestamp())
        raw, uid = self._stamp(obj)
        self._pods[key] = (raw, uid, self._rv)
        bisect.insort(self._order, key)
        self._record("ADDED", key, raw, None)
        return obj

    def create_many(self, pods: Iterable[dict[str, Any]], *, copy: bool = True) -> int:
        """Create many Pods at once (one ADDED event each); faster than `create` in a loop.

        `copy=False` skips the defensive deep copy: the caller hands over Pods it will not
        touch again (only their top level and metadata are replaced, never mutated).
        """
        n, created = 0, self._timestamp()
        for pod in pods:
            key, obj = self._prepare_new(pod, None, created, copy)
            raw, uid = self._stamp(obj)
            self._pods[key] = (raw, uid, self._rv)
            self._order.append(key)
            self._log.append(("ADDED", key, raw, None))
            n += 1
        self._order.sort()
        if n:
            self._after_change()
        return n

    def _after_change(self) -> None:
        if self.history_limit is not None and len(self._log) > self.history_limit * 1.1:
            self.compact(self._rv - self.history_limit, snapshots=False)
        self._changed()

    def _changed(self) -> None:
        """Hook: history grew or was compacted (the cluster wakes its watches here)."""

    def update(self, namespace: str, name: str, change: PodFn | dict[str, Any]) -> dict[str, Any]:
        """Replace a Pod, from a new object or a function of a copy (in place or returned).

        As in apiserver: uid, name, namespace and creationTimestamp cannot change; an
        object carrying a stale resourceVersion is a 409 Conflict; an update that changes
        nothing is a no-op (no new revision, no event).
        """
        key = _key(namespace, name)
        stored = self._pods.get(key)
        if stored is None:
            raise not_found(namespace, name)
        if callable(change):
            # Derived from the stored copy, so key order is kept and bytes compare exactly:
            # one parse per update, which is what lets churn run at thousands per second.
            new = orjson.loads(stored[0])
            created = new["metadata"].get("creationTimestamp")
            result = change(new)
            new = result if isinstance(result, dict) else new
            old = None
        else:
            new = orjson.loads(orjson.dumps(change))
            self._precondition(name, stored, new)
            old = orjson.loads(stored[0])
            created = old["metadata"].get("creationTimestamp")
        meta = new["metadata"] = dict(new.get("metadata") or {})
        meta.update(uid=stored[1], name=name, namespace=namespace, creationTimestamp=created,
                    resourceVersion=str(stored[2]))
        if new == old or (old is None and orjson.dumps(new) == stored[0]):
            return new
        raw, uid = self._stamp(new)
        self._pods[key] = (raw, uid, self._rv)
        self._record("MODIFIED", key, raw, stored[0])
        return new

    @staticmethod
    def _precondition(name: str, stored: tuple[bytes, str, int], obj: Any) -> None:
        sent = (obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj, dict) else None
        if sent not in (None, "") and sent != str(stored[2]):
            raise SimError(409, f'Operation cannot be fulfilled on pods "{name}": the object '
                           "has been modified; please apply your changes to the latest "
                           "version and try again", reason="Conflict")

    def merge_patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply an RFC 7386 merge patch; a resourceVersion in it is a precondition."""
        stored = self._pods.get(_key(namespace, name))
        if stored is None:
            raise not_found(namespace, name)
        if not isinstance(patch, dict):
            raise SimError(400, "a merge patch for a Pod must be a JSON object")
        self._precondition(name, stored, patch)
        return self.update(namespace, name, lambda obj: merge_patch(obj, patch))

    def delete(self, namespace: str, name: str) -> dict[str, Any]:
        """Delete at once (grace period 0); returns the final state the DELETED event carries."""
        key = _key(namespace, name)
        stored = self._pods.pop(key, None)
        if stored is None:
            raise not_found(namespace, name)
        del self._order[bisect.bisect_left(self._order, key)]
        obj = orjson.loads(stored[0])
        obj["metadata"]["deletionTimestamp"] = self._timestamp()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        raw, _ = self._stamp(obj)
        self._record("DELETED", key, raw, stored[0])
        return obj

    # -- history ----------------------------------------------------------------------------

    def compact(self, upto: int | None = None, *, snapshots: bool = True) -> int:
        """Forget history at or below `upto` (default: everything so far); returns the point.

        Older watch resumes then get 410, and so do continue tokens of older lists, unless
        `snapshots=False` (the automatic trim to `history_limit`, which stands in for
        etcd's five-minute compaction window and so should not cut short a list that is
        still paging through a retained snapshot).
        """
        upto = self._rv if upto is None else min(max(upto, self._compacted), self._rv)
        del self._log[: upto - self._compacted]
        self._compacted = upto
        if snapshots:
            for rv in [rv for rv in self._snapshots if rv < upto]:
                del self._snapshots[rv]
        self._changed()
        return upto

    def retained(self, rv: int) -> bool:
        """Whether a list at `rv` can still be continued: in history, or a kept snapshot."""
        return rv >= self._compacted or rv in self._snapshots

    def snapshot_at(self, rv: int) -> Snapshot:
        """The state at revision `rv` (retained history), kept for the following pages."""
        snap = self._snapshots.get(rv)
        if snap is not None:
            self._snapshots.move_to_end(rv)
            return snap
        items = {k: v[0] for k, v in self._pods.items()}
        if rv < self._rv:
            reconstruct(items, self._log[rv - self._compacted:])
            order = sorted(items)
        else:
            order = list(self._order)
        snap = Snapshot(rv=rv, order=order, items=items)
        self._snapshots[rv] = snap
        while len(self._snapshots) > self.max_snapshots:
            self._snapshots.popitem(last=False)
        return snap

    def _restamp(self, start_rv: int) -> None:
        """Forget all history and re-stamp every Pod with revisions counting from `start_rv`."""
        self._rv = start_rv
        self._log.clear()
        self._snapshots.clear()
        for key in self._order:
            obj = orjson.loads(self._pods[key][0])
            raw, uid = self._stamp(obj)
            self._pods[key] = (raw, uid, self._rv)
        self._compacted = self._rv
