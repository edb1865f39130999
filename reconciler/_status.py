"""What a cluster reconciler reports about itself, for /status and the status page."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime


class Phase(enum.StrEnum):
    """Where a reconciler is in its life; shown as `state` in /status."""

    STARTING = "starting"
    WAITING_LEASE = "waiting-lease"
    RUNNING = "running"
    """A cluster's supervisor holds the lease and its reconcilers run."""
    SYNCING = "syncing"
    WATCHING = "watching"
    BACKOFF = "backoff"
    REFUSED = "refused"
    """The source refuses this kind (403, or its API is absent); retried with backoff."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    FENCED = "fenced"
    FAILED = "failed"


class RateMeter:
    """Events per second over the last few whole seconds, in per-second buckets.

    Cheap enough for every event (one comparison and an add), unlike a timestamp per event.
    """

    def __init__(self, window: int = 5) -> None:
        self._window = window
        self._buckets: deque[list[int]] = deque(maxlen=window + 1)

    def add(self, now: float, n: int = 1) -> None:
        """Count `n` events at loop time `now`."""
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])

    def rate(self, now: float) -> float:
        """Average events per second over the last `window` complete seconds."""
        current = int(now)
        oldest = current - self._window
        total = 0
        for second, n in self._buckets:  # (a loop, not a generator: /status asks per kind)
            if oldest <= second < current:
                total += n
        return total / self._window


@dataclass(slots=True)
class ReconcilerStatus:
    """A live view of one reconciler; read by the HTTP layer, written only by the reconciler."""

    cluster: str
    kind: str = ""
    phase: Phase = Phase.STARTING
    last_full_sync: datetime | None = None
    last_full_sync_seconds: float | None = None
    full_syncs: int = 0
    version_resets: int = 0
    """Times the cluster's versions went backwards (rebuilt, etcd restored) and this
    reconciler reset its rows' versions."""
    last_error: str | None = None
    refused: bool = False
    events: int = 0
    resume_version: int | None = None
    rate: RateMeter = field(default_factory=RateMeter)
