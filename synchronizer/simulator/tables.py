"""The live objects of one resource: bytes by key, keys in etcd order.

Why bytes and sorted keys: a list page is a bisect into the sorted keys and a join of the
stored bytes, and a namespace is a contiguous key range (`ns/` .. `ns0`: "/" sorts just
before "0", and names are DNS labels), so neither lists nor namespace scans parse objects.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

from .resources import ResourceSpec
from .snapshots import Snapshot
from .wire import SimError, not_found

Stored = tuple[bytes, str, int]
"""(object bytes, uid, resourceVersion) of one live object."""


class Table:
    """The live objects of one resource, with keys kept in etcd order."""

    __slots__ = ("items", "order", "snapshots", "spec")

    def __init__(self, spec: ResourceSpec) -> None:
        self.spec = spec
        self.items: dict[str, Stored] = {}
        self.order: list[str] = []
        self.snapshots: OrderedDict[int, Snapshot] = OrderedDict()

    def key(self, namespace: str | None, name: str) -> str:
        """`namespace/name` for a namespaced kind, `name` otherwise."""
        return f"{namespace or 'default'}/{name}" if self.spec.namespaced else name

    def in_namespace(self, namespace: str) -> list[str]:
        """The keys in one namespace (they sort together: "/" < "0", names are DNS)."""
        lo = bisect.bisect_left(self.order, namespace + "/")
        return self.order[lo:bisect.bisect_left(self.order, namespace + "0")]

    def missing(self, name: str) -> SimError:
        """The 404 for an object of this resource."""
        return not_found(None, name, self.spec.plural, self.spec.group)


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key; the namespace is "" for a cluster-scoped object."""
    ns, _, name = key.rpartition("/")
    return ns, name
