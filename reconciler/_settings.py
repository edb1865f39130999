"""Tuning of one cluster reconciler; the synchronizer fills it from its config file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcilerSettings:
    """Knobs of one cluster reconciler, with defaults that suit 100k-pod clusters."""

    senders: int = 8
    """Sender coroutines; a key always goes to the same one, so its order is kept."""
    batch_size: int = 500
    """Most records one sender writes in one transaction."""
    linger: float = 0.1
    """Seconds a sender waits for a batch to fill before writing what it has."""
    shard_capacity: int = 5000
    """Distinct pending keys per sender before producers wait (back-pressure)."""
    gate_capacity: int = 100_000
    """Events parked during a full sync before they are dropped and another sync scheduled."""
    gate_enabled: bool = True
    """Park events during a full sync. Off, events flow straight through: the merge rule
    alone still converges (the gate saves writes and keeps replay ordered); tests compare
    both."""
    full_sync_interval: float = 600.0
    """Seconds between periodic full syncs (a full sync also runs on start and after 410)."""
    backoff_initial: float = 0.2
    """First retry delay after a failure (jittered, doubled up to `backoff_max`)."""
    backoff_max: float = 30.0
    """Cap on retry delays."""
    lease_ttl: float = 30.0
    """Seconds a cluster lease lives without renewal; renewed every third of it."""
    apply_retries: int = 0
    """Transient write failures retried before giving up a batch; 0 means retry forever."""
    stop_timeout: float = 10.0
    """Seconds a graceful stop waits for the senders to flush."""
