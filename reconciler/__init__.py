"""A reusable engine that keeps a store true to a listed-and-watched source.

Role: for one kind of one cluster, a `ClusterReconciler` runs a full sync (list, diff
against the store's index, write the difference) on start and periodically, and a watch in
between; events pass a gate that parks them during a full sync, then shard by key to
sender coroutines that batch, coalesce and write under the merge rule (newer version and
different checksum). A `ClusterSupervisor` holds the cluster's lease and runs all of its
kinds' reconcilers under it.
Inputs: a `Source` and a `Store` per kind, optional `Leases`, `Metrics` and a clock.
Output: the store's rows. It imports no ZooKeeper, database or Kubernetes code; the
`synchronizer` package wires the real ones in.
"""

from ._checksum import TOMBSTONE, canonical, checksum
from ._cluster import ClusterReconciler
from ._errors import (
    Expired,
    Fenced,
    QueueClosed,
    ReconcilerError,
    Refused,
    SourceError,
    SourceUnavailable,
    Stalled,
    StoreError,
    Transient,
)
from ._leases import BatchedLeases, LeaseBatch
from ._metrics import MetricChild, NullMetrics, bound
from ._protocols import Clock, Leases, Metrics, Runnable, Source, Store
from ._settings import ReconcilerSettings
from ._status import Phase, ReconcilerStatus
from ._supervisor import ClusterSupervisor, SupervisorStatus
from ._types import (
    ApplyResult,
    Bookmark,
    Checksum,
    ClusterId,
    Event,
    Fence,
    ObjectKey,
    Page,
    Record,
    State,
    StoredIndex,
    Unchanged,
)
from ._writer import MultiStore, Scope, WriteGroup, Writer, WriterSettings

__all__ = [
    "TOMBSTONE",
    "ApplyResult",
    "BatchedLeases",
    "Bookmark",
    "Checksum",
    "Clock",
    "ClusterId",
    "ClusterReconciler",
    "ClusterSupervisor",
    "Event",
    "Expired",
    "Fence",
    "Fenced",
    "LeaseBatch",
    "Leases",
    "MetricChild",
    "Metrics",
    "MultiStore",
    "NullMetrics",
    "ObjectKey",
    "Page",
    "Phase",
    "QueueClosed",
    "ReconcilerError",
    "ReconcilerSettings",
    "ReconcilerStatus",
    "Record",
    "Refused",
    "Runnable",
    "Scope",
    "Source",
    "SourceError",
    "SourceUnavailable",
    "Stalled",
    "State",
    "Store",
    "StoreError",
    "StoredIndex",
    "SupervisorStatus",
    "Transient",
    "Unchanged",
    "WriteGroup",
    "Writer",
    "WriterSettings",
    "bound",
    "canonical",
    "checksum",
]
