"""`series`: plain-value series render exactly as prometheus-client's own metrics would."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)

from synchronizer.metrics import CATALOGUE, EVENT_BUCKETS, PREFIX, PrometheusMetrics
from synchronizer.series import Families, Family

CK = {"cluster": "c-1", "kind": "pods"}


@pytest.fixture
def no_created():
    disable_created_metrics()
    yield
    enable_created_metrics()


def test_the_page_is_what_the_librarys_own_metrics_render(no_created) -> None:
    """Every catalogue family, updated the same way on both sides: byte for byte."""
    ours = PrometheusMetrics()
    theirs = CollectorRegistry()
    native = {}
    for short, spec in CATALOGUE.items():
        name = PREFIX + short
        if spec.kind == "counter":
            native[short] = Counter(name.removesuffix("_total"), spec.help, spec.labels,
                                    registry=theirs)
        elif spec.kind == "gauge":
            native[short] = Gauge(name, spec.help, spec.labels, registry=theirs)
        else:
            native[short] = Histogram(name, spec.help, spec.labels, buckets=spec.buckets,
                                      registry=theirs)

    def both(short: str, labels: dict[str, str], op: str, value: float) -> None:
        getattr(ours, op)(short, labels, value)
        names = CATALOGUE[short].labels
        child = native[short].labels(**{k: labels[k] for k in names}) if names \
            else native[short]
        getattr(child, {"set": "set", "inc": "inc", "observe": "observe"}[op])(value)

    both("is_master", {}, "set", 1)
    both("rebalances_total", {}, "inc", 2)
    both("events_total", {**CK, "type": "ADDED"}, "inc", 3)
    both("events_total", {**CK, "type": "BOOKMARK"}, "inc", 1)
    both("events_total", {"cluster": "c-2", "kind": "nodes", "type": "ADDED"}, "inc", 0)
    both("sender_queue_depth", CK, "set", 7)
    both("sender_queue_depth", CK, "inc", -2)
    both("lag_seconds", CK, "set", 0.125)
    for value in (0.0, 0.01, 0.011, 0.3, 2.5, 9.99, 31.0, 1e9):  # edges are inclusive
        both("event_to_row_seconds", CK, "observe", value)
    both("full_sync_duration_seconds", {"cluster": "c-1", "kind": "pods"}, "observe", 4.2)
    both("bkcmdb_request_duration_seconds", {"endpoint": "x\"y\\z\n"}, "observe", 0.2)
    assert ours.exposition() == generate_latest(theirs)


def test_a_histogram_counts_each_observation_in_its_first_bucket_at_or_above() -> None:
    family = Family("h", "help", "histogram", ("a",), EVENT_BUCKETS)
    series = family.child(("x",))
    for value in (0.01, 0.02, 30, 31):
        series.observe(value)
    buckets = {s.labels["le"]: s.value for s in family.metric().samples
               if s.name == "h_bucket"}
    assert buckets["0.01"] == 1 and buckets["0.05"] == 2 and buckets["10.0"] == 2
    assert buckets["30.0"] == 3 and buckets["+Inf"] == 4


def test_a_counter_refuses_to_go_down_and_a_removed_series_is_detached() -> None:
    family = Family("c", "help", "counter", ("a",))
    series = family.child(("x",))
    with pytest.raises(ValueError):
        series.inc(-1)
    family.remove(("x",))
    series.inc()  # a reference kept to it: goes nowhere
    assert family.metric().samples == []
    assert family.child(("x",)) is not series
    with pytest.raises(ValueError):
        family.child(("x", "y"))


def test_a_page_rendered_in_another_thread_sees_whole_maps_while_series_are_added() -> None:
    """The page is rendered in a worker thread (http.py) while the loop adds series: a
    copy of the map is taken, never an iteration over the live one."""
    family = Family("g", "help", "gauge", ("n",))
    registry = CollectorRegistry()
    registry.register(Families([family]))
    stop = threading.Event()
    failures: list[BaseException] = []

    def render() -> None:
        while not stop.is_set():
            try:
                generate_latest(registry)
            except BaseException as exc:  # the assertion below reports it
                failures.append(exc)
                return

    reader = threading.Thread(target=render)
    reader.start()
    try:
        for n in range(200_000):
            family.child((str(n),)).set(n)
    finally:
        stop.set()
        reader.join()
    assert failures == []
