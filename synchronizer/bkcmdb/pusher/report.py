"""What one push did and what it left undone: `PushReport`, pending reasons, dead letters.

A push returns a report instead of logging and counting as it goes, so the runner decides
scheduling from it (error → backoff, pending → soon, else the period) and the product maps
it onto metrics and `/status` in one place. "Pending" is recomputed at the end of every push
from the tables and the ledger — it is the number of objects not yet equal, with the reason
each one waits — so it can never drift from the truth the way a counter of queued events
can. A *dead letter* is an object bk-cmdb refused with a permanent `result: false`; it names
the object, the action, bk-cmdb's code and message, and is retried when its row changes or
at the next full reconcile — never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import BkCmdbError

PENDING_SAMPLE = 20
"""Pending objects listed by name in a report; the rest are only counted per reason."""


class PushMode(StrEnum):
    """How much a push reads before comparing."""

    INCREMENTAL = "incremental"
    """Rows changed since the last push, against the ledger: no bk-cmdb request if equal."""
    SWEEP = "sweep"
    """Every row, against the ledger (catches rows a watermark missed)."""
    FULL = "full"
    """Every row, against bk-cmdb itself, listed page by page: repairs hand edits."""


class Reason(StrEnum):
    """Why an object is not equal yet."""

    NO_HOST = "no_host"
    """A node whose internal IP is no host of the cluster's business."""
    NO_NODE = "no_node"
    """A pod whose node is not in bk-cmdb (not scheduled, no host, or not in the tables)."""
    NO_NAMESPACE = "no_namespace"
    """A workload or pod whose namespace is not in the tables."""
    NOT_STARTED = "containers_without_id"
    """A pod with a container that has no id yet."""
    NO_MODULE = "no_module"
    """A container-server pod whose business has no module to place it under."""
    NAME_TAKEN = "name_taken"
    """Another object of the tables still holds its bk-cmdb unique key."""
    BAD_ROW = "bad_row"
    """The row cannot be read."""
    DEAD_LETTER = "dead_letter"
    """bk-cmdb refused it permanently."""
    RETRY = "retry"
    """Not done yet: an error stopped the push, or the action is next in line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """One object not yet equal."""

    kind: str
    uid: str
    name: str
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """An object bk-cmdb refused permanently, with bk-cmdb's own code and message."""

    kind: str
    uid: str
    name: str
    action: str
    code: int | None
    message: str
    digest: str = ""
    """The digest refused; a changed row is tried again."""

    def line(self) -> str:
        """One log line."""
        return (f"bk-cmdb refused to {self.action} {self.kind} {self.name!r} ({self.uid}): "
                f"code {self.code}: {self.message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PushError:
    """The error that ended a push early (or made a whole cluster wait)."""

    kind: str
    """The error class: `TransientError`, `AuthError`, `NoDefaultModule` …"""
    message: str
    code: int | None = None
    endpoint: str = ""
    transient: bool = True
    stopped: bool = True
    """The push ended here (retry with backoff); False: only some objects wait for it (a
    business without the default module), and the push went on with the rest."""

    @classmethod
    def of(cls, exc: BaseException, *, transient: bool, stopped: bool = True) -> PushError:
        """From an exception (bk-cmdb's code and endpoint when it has them)."""
        if isinstance(exc, BkCmdbError):
            return cls(kind=type(exc).__name__, message=str(exc), code=exc.code,
                       endpoint=exc.endpoint, transient=transient, stopped=stopped)
        return cls(kind=type(exc).__name__, message=" ".join(str(exc).split()) or repr(exc),
                   transient=transient, stopped=stopped)


@dataclass(slots=True, kw_only=True)
class PushReport:
    """One push of one cluster."""

    cluster: str
    mode: PushMode
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    adopted: Counter[str] = field(default_factory=Counter)
    forgotten: Counter[str] = field(default_factory=Counter)
    """Ledger entries whose bk-cmdb object had vanished (full reconcile)."""
    drifted: Counter[str] = field(default_factory=Counter)
    """Objects found changed in bk-cmdb (full reconcile), brought back by this push."""
    orphans: int = 0
    """Objects of our cluster no row wants and no entry names (full reconcile), deleted."""
    requests: int = 0
    rows_read: int = 0
    pending: Counter[Reason] = field(default_factory=Counter)
    pending_sample: list[Pending] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """Dead letters made by this push."""
    error: PushError | None = None
    finished: bool = False
    """The cluster was removed and nothing of it is left in bk-cmdb."""

    @property
    def pending_total(self) -> int:
        """Objects not yet equal."""
        return sum(self.pending.values())

    @property
    def changed(self) -> int:
        """Objects created, updated, deleted or adopted."""
        return sum(self.created.values()) + sum(self.updated.values()) + \
            sum(self.deleted.values()) + sum(self.adopted.values())

    def wait(self, item: Pending) -> None:
        """Count one pending object (and list it, up to `PENDING_SAMPLE`)."""
        self.pending[item.reason] += 1
        if len(self.pending_sample) < PENDING_SAMPLE:
            self.pending_sample.append(item)

    def summary(self) -> str:
        """One line: what changed, what waits, and the error."""
        def counts(counter: Counter[str]) -> str:
            return ",".join(f"{k}={v}" for k, v in sorted(counter.items())) or "0"
        parts = [f"{self.mode}", f"created {counts(self.created)}",
                 f"updated {counts(self.updated)}", f"deleted {counts(self.deleted)}",
                 f"adopted {counts(self.adopted)}", f"requests {self.requests}",
                 f"pending {self.pending_total}"]
        if self.pending:
            parts[-1] += f" ({', '.join(f'{r}={n}' for r, n in sorted(self.pending.items()))})"
        if self.error is not None:
            parts.append(f"error {self.error.message}")
        return "; ".join(parts)
