"""What the runner tells the rest of the product after every push: `PushObserver`.

The runner knows nothing of Prometheus or `/status`; it calls an observer with each push's
report. `PushStatusBoard` is the observer the product can use as is: it keeps the latest
facts per cluster, from which the gauge `bkcmdb_sync_bkcmdb_pending{cluster}` and the
`/status` fields are read (see `snapshot`). A cluster that is no longer pushed here is
`dropped`, so its gauge series goes away instead of freezing at its last value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .report import PushReport

ERROR_CHARS = 300
"""Characters of the last error kept for `/status` (bk-cmdb messages can be long)."""


class PushObserver(Protocol):
    """Told about every push the runner finishes, and every cluster it stops pushing."""

    def pushed(self, cluster: str, report: PushReport, *, at: float) -> None:
        """A push of `cluster` ended at wall time `at`."""
        ...

    def dropped(self, cluster: str) -> None:
        """`cluster` is no longer pushed by this instance."""
        ...


@dataclass(slots=True)
class ClusterPushStatus:
    """The latest push facts of one cluster."""

    pending: int = 0
    pending_by_reason: dict[str, int] = field(default_factory=dict)
    last_push_at: float | None = None
    last_full_at: float | None = None
    last_ok_at: float | None = None
    last_error: str = ""
    last_error_code: int | None = None
    last_result: str = ""
    dead_letters: int = 0
    pushes: int = 0
    requests: int = 0


class PushStatusBoard:
    """A `PushObserver` that keeps the latest facts per cluster."""

    def __init__(self) -> None:
        self.clusters: dict[str, ClusterPushStatus] = {}

    def pushed(self, cluster: str, report: PushReport, *, at: float) -> None:
        """Record one push."""
        status = self.clusters.setdefault(cluster, ClusterPushStatus())
        status.pending = report.pending_total
        status.pending_by_reason = {str(k): v for k, v in sorted(report.pending.items())}
        status.last_push_at = at
        status.last_result = report.summary()
        status.pushes += 1
        status.requests += report.requests
        status.dead_letters += len(report.dead_letters)
        if report.error is None:
            status.last_ok_at = at
            status.last_error, status.last_error_code = "", None
            if report.mode == "full":
                status.last_full_at = at
        else:
            status.last_error = report.error.message[:ERROR_CHARS]
            status.last_error_code = report.error.code

    def dropped(self, cluster: str) -> None:
        """Forget a cluster."""
        self.clusters.pop(cluster, None)

    def pending(self) -> dict[str, int]:
        """The gauge `bkcmdb_sync_bkcmdb_pending{cluster}`."""
        return {c: s.pending for c, s in sorted(self.clusters.items())}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per cluster, the fields `/status` shows."""
        return {c: {"pending": s.pending, "pending_by_reason": dict(s.pending_by_reason),
                    "last_push_at": s.last_push_at, "last_full_at": s.last_full_at,
                    "last_ok_at": s.last_ok_at, "last_error": s.last_error,
                    "last_error_code": s.last_error_code, "last_result": s.last_result,
                    "dead_letters": s.dead_letters, "pushes": s.pushes,
                    "requests": s.requests}
                for c, s in sorted(self.clusters.items())}
