"""Metric series as plain values, shown through prometheus-client's custom-collector API.

Why not prometheus-client's own Counter, Gauge and Histogram children: a fleet instance
holds about 30,000 labelled series (200 clusters of eight kinds), and the library's child
is built for any use, not for that many. Creating one validates its name and label names
again (about 14 µs: a fifth of a small cluster's fixed cost in a fleet's first sync), each
value takes a lock on every update, and an observation walks the buckets in Python. Here
a series is a slotted object with a float (or a list of bucket counts and a sum), updated
with one addition, and a histogram finds its bucket by bisection.

The page stays the library's: `Families.collect` yields its metric families
(`CounterMetricFamily`, `GaugeMetricFamily`, `HistogramMetricFamily`) to a
`CollectorRegistry`, and `generate_latest` renders them as it renders its own metrics:
the same names, HELP and TYPE lines, label order, `le` spellings and sample order.

Threads: series are created and updated by the event loop's thread only. The page is
rendered in a worker thread (`http.py`), which reads a copy of each family's series map
(`dict.copy` runs without releasing the GIL, so it sees the map whole) and of each
histogram's counts; an update landing meanwhile shows on the next scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Literal

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Kind = Literal["counter", "gauge", "histogram"]


class CounterSeries:
    """A value that only goes up."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, n: float = 1) -> None:
        if n < 0:
            raise ValueError("a counter only goes up")
        self.value += n


class GaugeSeries:
    """A value that is set, or moved either way."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, n: float = 1) -> None:
        self.value += n

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramSeries:
    """Observations counted per bucket (upper bounds inclusive, then +Inf) and summed."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Per bucket, not cumulative; the last one is +Inf's."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


Series = CounterSeries | GaugeSeries | HistogramSeries


class Family:
    """One metric's labelled series (or its one series, when it has no labels)."""

    __slots__ = ("_les", "bounds", "help", "kind", "labels", "name", "series")

    def __init__(self, name: str, help: str, kind: Kind, labels: Sequence[str] = (),
                 bounds: Sequence[float] = ()) -> None:
        """`name`: as shown (a counter's `_total` suffix is the library's to place)."""
        self.name, self.help, self.kind = name, help, kind
        self.labels = tuple(labels)
        self.bounds = tuple(sorted(bounds))
        self._les = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        self.series: dict[tuple[str, ...], Series] = {}
        if not self.labels:  # shown from the start, as the library shows its own
            self.child(())

    def child(self, values: tuple[str, ...]) -> Series:
        """The series of these label values (in `labels` order), made on first use."""
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.labels):
                raise ValueError(f"{self.name}: labels {self.labels}, got values {values}")
            series = self.series[values] = self._new()
        return series

    def remove(self, values: tuple[str, ...]) -> None:
        """Drop a series (a later update through a reference kept to it goes nowhere)."""
        self.series.pop(values, None)

    def _new(self) -> Series:
        if self.kind == "counter":
            return CounterSeries()
        if self.kind == "gauge":
            return GaugeSeries()
        return HistogramSeries(self.bounds)

    def metric(self) -> Metric:
        """The family as prometheus-client renders it (a snapshot)."""
        series = self.series.copy()
        family = self.described()
        if self.kind != "histogram":
            for values, s in series.items():
                family.add_metric(values, s.value)  # type: ignore[attr-defined, union-attr]
            return family
        samples = family.samples
        bucket, count, sum_ = f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"
        for values, s in series.items():
            assert isinstance(s, HistogramSeries)
            total, counts = s.sum, list(s.counts)
            labels = dict(zip(self.labels, values, strict=True))
            running = 0
            for le, n in zip(self._les, counts, strict=True):
                running += n
                samples.append(Sample(bucket, {**labels, "le": le}, float(running)))
            samples.append(Sample(count, labels, float(running)))
            samples.append(Sample(sum_, labels, total))
        return family

    def described(self) -> Metric:
        """The family without its samples (what a registry asks to check names)."""
        return _FAMILIES[self.kind](self.name, self.help, labels=self.labels)


_FAMILIES = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
             "histogram": HistogramMetricFamily}
"""prometheus-client's family of each kind (a counter's strips `_total`, then shows it)."""


class Families:
    """A registry's collector of families (register it once)."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.metric()

    def describe(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.described()
