"""`PrometheusMetrics.forget`: a cluster that leaves takes its gauges along, only its own."""

from __future__ import annotations

from synchronizer.metrics import PrometheusMetrics


def _value(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value("bkcmdb_sync_" + name, labels)


def test_forget_drops_a_clusters_gauges_keeps_its_counters_and_spares_the_others() -> None:
    metrics = PrometheusMetrics()
    for cluster in ("a", "b", "ab"):
        labels = {"cluster": cluster, "kind": "pods"}
        metrics.set("sender_queue_depth", labels, 3)
        metrics.child("lag_seconds", labels).set(1.5)  # a bound series too
        metrics.inc("fenced_writes_total", labels)
    metrics.forget("a")
    assert _value(metrics, "sender_queue_depth", cluster="a", kind="pods") is None
    assert _value(metrics, "lag_seconds", cluster="a", kind="pods") is None
    assert _value(metrics, "fenced_writes_total", cluster="a", kind="pods") == 1
    for other in ("b", "ab"):  # (a prefix of another cluster's name is not that cluster)
        assert _value(metrics, "sender_queue_depth", cluster=other, kind="pods") == 3
        assert _value(metrics, "lag_seconds", cluster=other, kind="pods") == 1.5
    # back here: a fresh series, not the detached one
    metrics.set("sender_queue_depth", {"cluster": "a", "kind": "pods"}, 7)
    assert _value(metrics, "sender_queue_depth", cluster="a", kind="pods") == 7
    metrics.inc("fenced_writes_total", {"cluster": "a", "kind": "pods"})
    assert _value(metrics, "fenced_writes_total", cluster="a", kind="pods") == 2
    metrics.forget("a")
    metrics.forget("a")  # twice, or never seen: nothing to do
    metrics.forget("never")
    assert _value(metrics, "sender_queue_depth", cluster="a", kind="pods") is None
