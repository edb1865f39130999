"""Scripted faults for the bk-cmdb simulator, and the request statistics tests assert on.

Why scripted, not random: each fault test provokes one precise situation — "the next two
namespace creates answer 429 with Retry-After: 3", "the next pod create is applied and then
the connection is cut" — and asserts the client's reaction. Rules are consumed in the order
they were added; a rule names a route (its gateway name, or `*`), how many matching requests
to let through first (`skip`) and how many to hit (`count`; None = until cleared).

Kinds of fault:
- `status`: answer this HTTP status (429, 5xx …) with the body the gateway or bk-cmdb would
  send, and `Retry-After` when `retry_after` is set;
- `result`: HTTP 200 with `result: false` and the given bk-cmdb `code` (e.g. 1199002);
- `delay`: wait `delay` seconds, then go on (it does not stop other rules from applying);
- `cut`: apply the request to the model, then drop the connection before answering — the
  ambiguous write, where the caller cannot know whether it happened;
- `cut_before`: drop the connection without applying anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["status", "result", "delay", "cut", "cut_before"]
FAULT_KINDS: tuple[str, ...] = ("status", "result", "delay", "cut", "cut_before")


@dataclass(slots=True, kw_only=True)
class Fault:
    """One queued fault."""

    kind: FaultKind
    route: str = "*"
    count: int | None = 1
    skip: int = 0
    status: int = 500
    retry_after: float | None = None
    code: int = 1199002
    message: str | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")

    def matches(self, route: str) -> bool:
        """Whether a request to `route` is one this fault counts."""
        return self.route in ("*", route)


@dataclass(slots=True)
class FaultScript:
    """The queue of faults, consulted by every bk-cmdb request before it is answered."""

    faults: list[Fault] = field(default_factory=list)

    def add(self, fault: Fault) -> Fault:
        """Queue a fault behind the others."""
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget every queued fault."""
        self.faults.clear()

    def take(self, route: str) -> tuple[float, Fault | None]:
        """The delay to add and the fault (if any) that decides this request's answer."""
        delay = 0.0
        for fault in list(self.faults):
            if not fault.matches(route):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
            if fault.kind == "delay":
                delay += fault.delay
                continue
            return delay, fault
        return delay, None


@dataclass(slots=True)
class Stats:
    """What the simulator saw: requests per route and the largest batch per route."""

    requests: Counter[str] = field(default_factory=Counter)
    largest_batch: dict[str, int] = field(default_factory=dict)
    rejected_auth: int = 0

    def record(self, route: str, batch: int) -> None:
        """Count one request to `route` carrying `batch` objects."""
        self.requests[route] += 1
        if batch > self.largest_batch.get(route, 0):
            self.largest_batch[route] = batch

    def reset(self) -> None:
        """Start counting afresh."""
        self.requests.clear()
        self.largest_batch.clear()
        self.rejected_auth = 0

    def as_dict(self) -> dict[str, object]:
        """The statistics as JSON."""
        return {"requests": dict(self.requests), "largest_batch": dict(self.largest_batch),
                "rejected_auth": self.rejected_auth}
