"""Metric series bound once: what a per-event path holds instead of a name and labels.

Looking a labelled series up costs more than updating it (a key built from the labels, a
dict lookup, then the update): an idle fleet counts a bookmark on every watch every
second, and every delivered batch observes each record's lag. Paths that update the same
series over and over bind it once (`bound`) and keep the result. A `Metrics` that offers
`child(name, labels)` returns its own series object; any other gets an adapter that
forwards to `inc`/`observe`/`set`, so the protocol itself stays three methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ._protocols import Metrics


class MetricChild(Protocol):
    """One series: a counter, gauge or histogram with its labels already chosen."""

    def inc(self, n: float = 1) -> None:
        """Add `n` (a counter or a gauge)."""
        ...

    def observe(self, value: float) -> None:
        """Record one observation (a histogram)."""
        ...

    def set(self, value: float) -> None:
        """Set a gauge."""
        ...


class NullMetrics:
    """Metrics that go nowhere, for embedding the engine without a metrics backend."""

    def inc(self, name: str, labels: object, n: float = 1) -> None:
        pass

    def observe(self, name: str, labels: object, value: float) -> None:
        pass

    def set(self, name: str, labels: object, value: float) -> None:
        pass

    def child(self, name: str, labels: object) -> NullMetrics.Child:
        return NullMetrics.Child()

    class Child:
        """A series that goes nowhere."""

        def inc(self, n: float = 1) -> None:
            pass

        def observe(self, value: float) -> None:
            pass

        def set(self, value: float) -> None:
            pass


class _Forward:
    """A series of a `Metrics` that cannot bind: each update goes through the protocol."""

    __slots__ = ("_labels", "_metrics", "_name")

    def __init__(self, metrics: Metrics, name: str, labels: Mapping[str, str]) -> None:
        self._metrics, self._name, self._labels = metrics, name, dict(labels)

    def inc(self, n: float = 1) -> None:
        self._metrics.inc(self._name, self._labels, n)

    def observe(self, value: float) -> None:
        self._metrics.observe(self._name, self._labels, value)

    def set(self, value: float) -> None:
        self._metrics.set(self._name, self._labels, value)


def bound(metrics: Metrics, name: str, labels: Mapping[str, str]) -> MetricChild:
    """The series `name{labels}` of `metrics`, to update without another lookup."""
    child = getattr(metrics, "child", None)
    if child is not None:
        return child(name, labels)  # type: ignore[no-any-return]
    return _Forward(metrics, name, labels)
