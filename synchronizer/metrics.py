"""Prometheus metrics: the catalogue, and the engine's `Metrics` protocol on top of it.

Every metric is declared once in `CATALOGUE` (name without the `bkcmdb_sync_` prefix, kind,
help, label names); the engine and the service refer to them by that short name. Labels
are per cluster, never per pod, so cardinality stays bounded by the number of clusters.
The dashboard and alert-rule tests compare their metric names with this catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from .series import Families, Family, Series

PREFIX = "bkcmdb_sync_"
Kind = Literal["counter", "gauge", "histogram"]

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
EVENT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)
"""Event to row, per cluster and kind: fewer buckets, as it has eight children a cluster
(the 500 ms aim, the 10 s alert and a median of tens of ms stay readable)."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric's declaration."""

    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


C = ("cluster",)
CK = ("cluster", "kind")

CATALOGUE: Mapping[str, Spec] = {
    # coordination
    "is_master": Spec("gauge", "1 while this instance is the elected master (standalone: 1)."),
    "assigned_clusters": Spec("gauge", "Clusters assigned to this instance right now."),
    "zk_session_state": Spec(
        "gauge", "1 for the current ZooKeeper session state, 0 for the others.", ("state",)
    ),
    "rebalances_total": Spec("counter", "Assignments published by the master."),
    "moved_clusters_total": Spec("counter", "Clusters that changed owner in a rebalance."),
    # the cluster registries, on the instance that reads them (the master, or standalone)
    "registry_clusters": Spec(
        "gauge", "Clusters in the registry's last good answer, held ones included.",
        ("registry",),
    ),
    "registry_held_clusters": Spec(
        "gauge", "Clusters the registry declares but holds (a paused SyncCluster, a BCS"
        " cluster not RUNNING): kept, not synced.", ("registry",),
    ),
    "registry_up": Spec(
        "gauge", "1 if the registry's last read answered, 0 if it failed (its last good"
        " answer is kept meanwhile).", ("registry",),
    ),
    "registry_last_success_timestamp_seconds": Spec(
        "gauge", "Unix time of the registry's last good answer.", ("registry",),
    ),
    "registry_reads_total": Spec(
        "counter", "Reads of the registry, by result (ok, error).", ("registry", "result"),
    ),
    "registry_conflicts": Spec(
        "gauge", "Cluster ids declared twice (by two registries, or twice by one); the"
        " first in precedence order is used.",
    ),
    # per cluster: supervision and lease
    "reconciler_restarts_total": Spec(
        "counter", "Cluster supervisor failures followed by a restart with backoff.", C
    ),
    "lease_acquisitions_total": Spec(
        "counter", "Lease acquisition attempts, by result (acquired, busy, error).",
        (*C, "result"),
    ),
    # per cluster and kind (kind: the resource, e.g. pods, nodes, deployments)
    "reconciler_up": Spec("gauge", "1 while the reconciler of a cluster's kind runs.", CK),
    "sync_healthy": Spec(
        "gauge", "1 after a kind's last full sync and watch succeeded, 0 while it fails"
        " (refused, unreachable).", CK,
    ),
    "sync_errors_total": Spec(
        "counter", "Failed full syncs and watches, by reason (refused: 401/403/404; error).",
        (*CK, "reason"),
    ),
    "events_total": Spec(
        "counter", "Watch events received, by type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR,"
        " UNKNOWN).", (*CK, "type"),
    ),
    "skipped_objects_total": Spec(
        "counter", "Objects or stream lines that could not be used, by reason.",
        (*CK, "reason"),
    ),
    "watch_restarts_total": Spec(
        "counter", "Watch streams reopened, by reason (closed, error, stalled, expired).",
        (*CK, "reason"),
    ),
    "full_syncs_total": Spec(
        "counter", "Full syncs finished, by trigger and result.", (*CK, "trigger", "result")
    ),
    "full_sync_duration_seconds": Spec(
        "histogram", "Duration of successful full syncs (of one kind; by cluster).", C,
        DURATION_BUCKETS
    ),
    "last_full_sync_timestamp_seconds": Spec(
        "gauge", "Unix time of the last successful full sync.", CK
    ),
    "full_sync_changes_total": Spec(
        "counter", "Records a full sync sent to the store, by op (upsert, delete).",
        (*CK, "op"),
    ),
    "parked_events": Spec("gauge", "Events parked by the gate during a full sync.", CK),
    "version_resets_total": Spec(
        "counter", "Times a cluster's versions went backwards (rebuilt, etcd restored) and"
        " its rows' versions were reset before a full rewrite: alert on any increase.", CK,
    ),
    "gate_overflows_total": Spec(
        "counter", "Times the parked queue overflowed and another full sync was scheduled.", CK,
    ),
    "sender_queue_depth": Spec("gauge", "Keys waiting in the sender queues.", CK),
    "writes_total": Spec(
        "counter", "Records offered to the store, by op (upsert, delete, mixed) and result"
        " (written, unchanged, rejected).", (*CK, "op", "result"),
    ),
    "batches_total": Spec(
        "counter", "Store transactions, by result (ok, transient, fenced, error).",
        (*CK, "result"),
    ),
    "batch_duration_seconds": Spec(
        "histogram", "Duration of the store transactions that carried a cluster's rows.", C,
        LATENCY_BUCKETS
    ),
    "event_to_row_seconds": Spec(
        "histogram", "From observing an event to its batch being committed.", CK,
        EVENT_BUCKETS,
    ),
    "lag_seconds": Spec(
        "gauge", "Now minus the observation time of the newest committed record.", CK
    ),
    "superseded_total": Spec(
        "counter", "Records dropped before the store because a newer version of the same"
        " object had already been taken (versions only go forward).", CK,
    ),
    "fenced_writes_total": Spec(
        "counter", "Batches refused because this instance no longer held the lease.", CK,
    ),
    "rows": Spec("gauge", "Active rows of the cluster in the CMDB, by kind (table).", CK),
    # the BlueKing CMDB (bk-cmdb) pusher
    "bkcmdb_requests_total": Spec(
        "counter", "Requests to bk-cmdb (every attempt), by endpoint (the gateway resource"
        " name) and status (success, duplicate, rate_limited, server_error, unreachable,"
        " ambiguous, auth, rejected).", ("endpoint", "status"),
    ),
    "bkcmdb_request_duration_seconds": Spec(
        "histogram", "Duration of one request to bk-cmdb.", ("endpoint",), LATENCY_BUCKETS
    ),
    "bkcmdb_pending": Spec(
        "gauge", "Objects of the cluster not yet equal in bk-cmdb, after its last push.", C
    ),
    "bkcmdb_dead_letters": Spec(
        "gauge", "Objects of the cluster bk-cmdb refused permanently (retried when their row"
        " changes and at every full reconcile).", C,
    ),
    "bkcmdb_last_push_timestamp_seconds": Spec(
        "gauge", "Unix time of the cluster's last push to bk-cmdb (whatever its result).", C
    ),
    "bkcmdb_last_full_reconcile_timestamp_seconds": Spec(
        "gauge", "Unix time of the cluster's last successful full reconcile with bk-cmdb.", C
    ),
    "bkcmdb_pushes_total": Spec(
        "counter", "Pushes to bk-cmdb, by mode (incremental, sweep, full) and result (ok,"
        " transient, error).", (*C, "mode", "result"),
    ),
    "bkcmdb_objects_total": Spec(
        "counter", "Objects written to bk-cmdb, by op (created, updated, deleted, adopted).",
        (*C, "op"),
    ),
}


class PrometheusMetrics:
    """The engine's `Metrics` protocol backed by one prometheus-client registry, whose
    series are `series.Family`'s plain values (see that module for why)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._families: dict[str, Family] = {
            short: Family(PREFIX + short, spec.help, spec.kind, spec.labels, spec.buckets)
            for short, spec in CATALOGUE.items()}
        # No `<name>_created` series: a creation timestamp per labelled child was one line
        # in seven of a fleet's page (a cluster has eight kinds), and no dashboard, alert
        # or rate() needs one (Prometheus reads counter resets from the values).
        self.registry.register(Families(list(self._families.values())))
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
        self._of_cluster: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {}
        """The keys of `_children` per cluster label: `forget` touches only its own."""

    def _child(self, name: str, labels: Mapping[str, str]) -> Any:
        """The labelled child, resolved once per label set and cached.

        Building the values' key costs more than the update itself, and the engine updates
        per event. Labels the metric does not carry are dropped: the engine labels
        everything with cluster and kind, and the full-sync and transaction histograms are
        per cluster only (a fleet instance's page is mostly histogram buckets: per kind,
        three histograms of 200 clusters made 74,000 of its lines).
        """
        key = (name, tuple(labels.items()))
        child = self._children.get(key)
        if child is None:
            family = self._families[name]
            child = self._children[key] = family.child(
                tuple(str(labels[k]) for k in family.labels))
            cluster = labels.get("cluster")
            if cluster is not None:
                self._of_cluster.setdefault(cluster, set()).add(key)
        return child

    def child(self, name: str, labels: Mapping[str, str]) -> Any:
        """The labelled series itself (`reconciler.bound`), for a path that updates it
        over and over. A cluster's gauges are dropped by `forget`: bind gauges only for as
        long as the cluster runs here."""
        return self._child(name, labels)

    def inc(self, name: str, labels: Mapping[str, str], n: float = 1) -> None:
        """Add `n` to a counter (or a gauge)."""
        self._child(name, labels).inc(n)

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Record one histogram observation."""
        self._child(name, labels).observe(value)

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Set a gauge."""
        self._child(name, labels).set(value)

    def remove(self, name: str, labels: Mapping[str, str]) -> None:
        """Drop one labelled series (a gauge about something no longer here)."""
        key = (name, tuple(labels.items()))
        if self._children.pop(key, None) is not None and "cluster" in labels:
            self._of_cluster.get(labels["cluster"], set()).discard(key)
        family = self._families[name]
        family.remove(tuple(str(labels.get(k, "")) for k in family.labels))

    def forget(self, cluster: str) -> None:
        """Drop the gauges of a cluster this instance no longer owns.

        Gauges describe the present and would lie about a cluster that runs elsewhere now.
        Counters and histograms are history: they stay, so `fenced_writes_total` is still
        there after the stand-down the fencing caused (series are bounded by the clusters
        this process ever owned).
        """
        # Only this cluster's own series: scanning every series per cluster made stopping
        # (or handing over) n clusters O(n^2), seconds of a blocked loop at a few hundred.
        for key in self._of_cluster.pop(cluster, ()):
            # a removed child must not be reused: a later set would go to a detached series
            self._children.pop(key, None)
            name, labels = key
            family = self._families[name]
            if family.kind == "gauge" and "cluster" in family.labels:
                values = dict(labels)
                family.remove(tuple(str(values[k]) for k in family.labels))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what promtool checks)."""
        return generate_latest(self.registry)


def exported_names() -> set[str]:
    """Every series family name as Prometheus shows it (for dashboard and rule checks)."""
    names: set[str] = set()
    for short, spec in CATALOGUE.items():
        full = PREFIX + short
        if spec.kind == "histogram":
            names |= {full + "_bucket", full + "_sum", full + "_count"}
        else:
            names.add(full)
    return names
