"""The ledger: what the product made in bk-cmdb, per cluster, so a push is a difference.

bk-cmdb stores no resourceVersion or checksum of ours and answers ids of its own, so the
pusher remembers, for every object it made: the row it stands for (`kind`, `uid`), bk-cmdb's
`bk_id`, the `digest` of the fields it pushed (a hash of exactly what bk-cmdb holds, so a
change bk-cmdb cannot see — a pod's phase, a node's heartbeat — changes nothing), and the bk
ids it hangs under (`parents`). With that, "what must change" is a comparison of the tables
with the ledger, made in memory, that costs no request when nothing changed; and every
request is by id, never by a name that might since mean another object.

The ledger is written after each successful request (one transaction per batch), so a crash
loses at most the answer of one request: the objects it made are found again by their
unique key on the next run (a create answers 1199014 and the client adopts them) and
written down then. Entries are never trusted blindly: a full reconcile lists bk-cmdb and
forgets entries whose object vanished.

One entry per `(cluster, kind, uid)`:

| kind | uid | name | parents |
| --- | --- | --- | --- |
| `cluster` | the cluster id | the bk name | `biz` |
| `namespace` | namespace uid | name | `cluster` |
| `node` | node uid | name | `cluster`, `host` |
| `workload` | workload uid | name (`bk_kind` = bk-cmdb kind) | `namespace` |
| `pods_workload` | the namespace's uid | `pods` | `namespace` |
| `pod` | pod uid | name (`bk_kind` = ref kind) | `namespace`, `node`, `workload`, `host` |
| `container_pod` | pod uid | name, `namespace` | `biz`, `module` |

A SQL ledger is one table, `bkcmdb_ledger(cluster_id, kind, uid, bk_id, digest, name,
namespace, bk_kind, parents JSON, updated_at)`, primary key `(cluster_id, kind, uid)`;
`entries` is one SELECT by cluster_id and `write` one transaction of upserts and deletes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ObjectKind(StrEnum):
    """What a ledger entry stands for."""

    CLUSTER = "cluster"
    NAMESPACE = "namespace"
    NODE = "node"
    WORKLOAD = "workload"
    PODS_WORKLOAD = "pods_workload"
    POD = "pod"
    CONTAINER_POD = "container_pod"


EntryKey = tuple[ObjectKind, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One object the product made (or adopted) in bk-cmdb."""

    kind: ObjectKind
    uid: str
    bk_id: int
    digest: str = ""
    """Digest of the fields pushed; "" means "unknown" (adopted and differing), so the next
    push brings the object up to date."""
    name: str = ""
    namespace: str = ""
    bk_kind: str = ""
    parents: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> EntryKey:
        """The entry's key within its cluster."""
        return (self.kind, self.uid)

    def parent(self, name: str) -> int:
        """The bk id of the named parent, 0 if none."""
        return int(self.parents.get(name, 0))


class Ledger(Protocol):
    """Read all of a cluster's entries; write a batch of changes atomically."""

    async def entries(self, cluster: str) -> Sequence[LedgerEntry]:
        """Every entry of `cluster`."""
        ...

    async def write(self, cluster: str, *, upsert: Sequence[LedgerEntry] = (),
                    delete: Sequence[EntryKey] = ()) -> None:
        """Insert or replace `upsert` and remove `delete`, all or nothing."""
        ...


class MemoryLedger:
    """`Ledger` in a dict, for tests and as the reference of the SQL one."""

    def __init__(self) -> None:
        self.clusters: dict[str, dict[EntryKey, LedgerEntry]] = {}
        self.writes = 0

    async def entries(self, cluster: str) -> Sequence[LedgerEntry]:
        """Every entry of `cluster`."""
        return list(self.clusters.get(cluster, {}).values())

    async def write(self, cluster: str, *, upsert: Sequence[LedgerEntry] = (),
                    delete: Sequence[EntryKey] = ()) -> None:
        """Apply one batch."""
        self.writes += 1
        table = self.clusters.setdefault(cluster, {})
        for key in delete:
            table.pop(key, None)
        for entry in upsert:
            table[entry.key] = entry


class LedgerView:
    """A cluster's ledger in memory, written through to the `Ledger` on every change.

    The pusher reads it for every plan (no database round trip) and keeps it as long as it
    keeps its claim on the cluster's task; another instance's pushes make it stale, which
    is why the runner drops it (`Pusher.forget`) when the claim was not continuous.
    """

    def __init__(self, cluster: str, store: Ledger, entries: Iterable[LedgerEntry]) -> None:
        self.cluster = cluster
        self._store = store
        self._entries: dict[EntryKey, LedgerEntry] = {e.key: e for e in entries}
        self.version = 0
        """Bumped by every change, so a plan of this ledger can be reused while it holds."""

    @classmethod
    async def load(cls, cluster: str, store: Ledger) -> LedgerView:
        """Read the cluster's entries from the store."""
        return cls(cluster, store, await store.entries(cluster))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, kind: ObjectKind, uid: str) -> LedgerEntry | None:
        """The entry, or None."""
        return self._entries.get((kind, uid))

    def of(self, *kinds: ObjectKind) -> list[LedgerEntry]:
        """The entries of the given kinds."""
        return [e for e in self._entries.values() if e.kind in kinds]

    def all(self) -> list[LedgerEntry]:
        """Every entry."""
        return list(self._entries.values())

    async def put(self, entries: Sequence[LedgerEntry]) -> None:
        """Record entries (one write)."""
        if entries:
            await self._store.write(self.cluster, upsert=entries)
            self._entries.update((e.key, e) for e in entries)
            self.version += 1

    async def remove(self, keys: Sequence[EntryKey]) -> None:
        """Forget entries (one write)."""
        if keys:
            await self._store.write(self.cluster, delete=keys)
            for key in keys:
                self._entries.pop(key, None)
            self.version += 1
