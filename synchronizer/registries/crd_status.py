"""SyncCluster status: what the product writes back, and when.

The user writes `spec`; the master writes `status` (CONTRACT.md "Cluster registries"):
`owner` (the instance reconciling it), `state` (Pending, Running, Paused, Error),
`lastFullSync`, `pods` (active pod rows), `observedGeneration`, and one `Ready` condition
whose reason names what is going on (docs/operations.md lists them). `desired_status` is a
pure function of the resource, the merged registries, the assignment and the owner's
summary (`synchronizer.summaries`), so every rule is tested without a cluster.

`StatusWriter` runs on the master only (one writer, like the one kopf watcher) and is
level-triggered: after every registry pull and every `TICK` it computes each listed
SyncCluster's desired status and patches (merge patch on the status subresource) those
that differ from what it last wrote, or - on a new master, which remembers nothing - from
what the list shows. Writes are bounded per resource: a change of state, owner or
condition at most every `MIN_GAP` seconds, a change of counts or sync time alone at most
every `COUNT_GAP` seconds, so a busy cluster's pod count does not turn into a stream of
writes to the home API server.

`Board` is the snapshot the operator's delete handler reads (from kopf's thread) to know
when a deleted SyncCluster's cluster is stopped everywhere: not in the assignment, and -
with `sync.on_cluster_removed: delete` - its rows soft-deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from synchronizer.summaries import Summaries, Summary

from .api import RegistryPull
from .crd import CrdRegistry
from .home import HomeError
from .spec import ClusterSpec, Origin
from .synccluster import INVALID, PAUSED, deleting, hold_reason, source_of, spec_of

log = logging.getLogger(__name__)

TICK = 2.0
"""Seconds between two passes of the status writer (owners' summaries change meanwhile)."""
MIN_GAP = 2.0
"""Seconds between two status writes of one resource for a change of state or condition."""
COUNT_GAP = 30.0
"""Seconds between two status writes of one resource that only move `pods`/`lastFullSync`."""
COUNTED = ("pods", "lastFullSync")

_STATE_OF = {"Synced": "Running", "Syncing": "Running", "KindRefused": "Running",
             "Starting": "Pending"}
"""The SyncCluster state for an owner's summary reason (anything else: Error)."""


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(ready: bool, reason: str, message: str, previous: Mapping[str, Any] | None,
               now: datetime) -> dict[str, Any]:
    status = "True" if ready else "False"
    since = None
    for cond in (previous or {}).get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == "Ready" \
                and cond.get("status") == status:
            since = cond.get("lastTransitionTime")
    return {"type": "Ready", "status": status, "reason": reason, "message": message[:500],
            "lastTransitionTime": since or _stamp(now)}


def desired_status(obj: Mapping[str, Any], *, winner: ClusterSpec | None,
                   conflict: str | None, owner: str | None, summary: Summary | None,
                   now: datetime) -> dict[str, Any] | None:
    """The status a SyncCluster should show (None: leave it alone, it is being deleted)."""
    if deleting(obj):
        return None
    previous = obj.get("status") if isinstance(obj.get("status"), Mapping) else None
    spec = spec_of(obj)
    generation = (obj.get("metadata") or {}).get("generation")
    out: dict[str, Any] = {"owner": "", "lastFullSync": None, "pods": 0,
                           "observedGeneration": generation}
    mine = winner is not None and winner.origin is Origin.CRD \
        and winner.source == source_of(obj)
    if spec.hold is not None and hold_reason(spec.hold)[0] == INVALID:
        state, ready, reason, message = "Error", False, INVALID, hold_reason(spec.hold)[1]
    elif not mine:
        state, ready, reason = "Error", False, "Conflict"
        message = conflict or (f"cluster {spec.id} is declared by"
                               f" {winner.origin if winner else 'another registry'}")
    elif spec.hold is not None:
        state, ready, reason, message = PAUSED, False, PAUSED, hold_reason(spec.hold)[1]
    elif owner is None:
        state, ready, reason = "Pending", False, "Pending"
        message = "waiting for the master to assign it to an instance"
    elif summary is None:
        state, ready, reason = "Pending", False, "Starting"
        message = f"assigned to {owner}, which has not reported it yet"
        out["owner"] = owner
    else:
        reason = summary.reason
        state = _STATE_OF.get(reason, "Error")
        ready = reason == "Synced"
        message = summary.message
        synced = summary.last_full_sync
        out.update(owner=owner, pods=summary.pods,
                   lastFullSync=_stamp(datetime.fromisoformat(synced)) if synced else None)
    out["state"] = state
    out["conditions"] = [_condition(ready, reason, message, previous, now)]
    return out


def _significant(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A status without its counts and without the transition time (what makes a write
    urgent), with absent and null fields alike."""
    if not status:
        return {}
    out = {k: v for k, v in status.items() if k not in COUNTED and v not in (None, "")}
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                         for c in status.get("conditions") or () if isinstance(c, Mapping)]
    return out


def _counts(status: Mapping[str, Any] | None) -> tuple[Any, ...]:
    return tuple((status or {}).get(k) or None for k in COUNTED)


@dataclass(frozen=True, slots=True)
class Board:
    """A snapshot for the operator's delete handler (read from kopf's thread)."""

    assigned: frozenset[str] = frozenset()
    declared: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """cluster id → (origin, source) of the spec that won the merge."""
    removing: frozenset[str] = frozenset()
    pulled: int = 0

    def waiting_for(self, cluster_id: str, source: str, since_pull: int) -> str | None:
        """Why the SyncCluster `source` (being deleted) must wait; None once released.

        `since_pull`: how many pulls had started when the deletion was first seen; a pull
        that started after it must have finished (and, for soft deletes, been seen by the
        removal), or the registry may not have noticed yet.
        """
        if self.pulled <= since_pull:
            return "the master has not read the registries since the deletion"
        origin, winner = self.declared.get(cluster_id, ("", ""))
        if origin == Origin.CRD and winner == source:
            return "the registry still declares it"
        if cluster_id in self.removing:
            return f"the rows of cluster {cluster_id} are being soft-deleted"
        if cluster_id in self.assigned and not origin:
            return f"cluster {cluster_id} is still assigned"
        return None


@dataclass(slots=True)
class _Written:
    status: dict[str, Any]
    at: float
    counts_at: float


class StatusWriter:
    """Writes SyncCluster status on the master; see the module docstring."""

    def __init__(self, *, registry: CrdRegistry, pull: RegistryPull,
                 owners: Callable[[], Mapping[str, str]], summaries: Summaries,
                 removing: Callable[[], frozenset[str]] = frozenset,
                 removal_seen: Callable[[], int] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._registry = registry
        self._pull = pull
        self._owners = owners
        self._summaries = summaries
        self._removing = removing
        self._removal_seen = removal_seen
        self._clock = clock
        self._written: dict[str, _Written] = {}
        self.board = Board()
        self.writes = 0

    async def run(self) -> None:
        """Write statuses until cancelled."""
        seen = -1
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    seen = await self._pull.wait_pulled(seen)
            await self.pass_once()

    def update_board(self) -> None:
        """Refresh the delete handler's snapshot from the latest merge and assignment."""
        pulled = self._pull.generation
        if self._removal_seen is not None:  # soft deletes: `removing` is as of this pull
            pulled = min(pulled, self._removal_seen())
        self.board = Board(
            assigned=frozenset(self._owners()),
            declared={c: (str(s.origin), s.source) for c, s in self._pull.declared.items()},
            removing=frozenset(self._removing()), pulled=pulled)

    async def pass_once(self) -> None:
        """One pass over the listed SyncClusters."""
        self.update_board()
        if not self._registry.listed:
            return
        loop = asyncio.get_running_loop()
        owners = self._owners()
        summaries = await self._summaries.read()
        declared = self._pull.declared
        now = self._clock()
        alive: set[str] = set()
        for obj in self._registry.objects:
            meta = obj.get("metadata") or {}
            uid = str(meta.get("uid") or source_of(obj))
            alive.add(uid)
            spec = spec_of(obj)
            owner = owners.get(spec.id)
            summary = summaries.get(owner, {}).get(spec.id) if owner else None
            desired = desired_status(obj, winner=declared.get(spec.id),
                                     conflict=self._pull.conflicts.get(spec.id),
                                     owner=owner, summary=summary, now=now)
            if desired is None:
                continue
            known = self._written.get(uid)
            before = known.status if known else obj.get("status")
            t = loop.time()
            if _significant(desired) != _significant(before):
                if known is not None and t - known.at < MIN_GAP:
                    continue
            elif _counts(desired) != _counts(before):
                if known is not None and t - known.counts_at < COUNT_GAP:
                    continue
            else:
                continue
            try:
                found = await self._registry.home.patch_status(
                    str(meta.get("namespace") or ""), str(meta.get("name") or ""), desired)
            except HomeError as exc:
                log.warning("SyncCluster %s: status not written: %s", source_of(obj), exc)
                continue
            if found:
                self.writes += 1
                self._written[uid] = _Written(desired, t, t)
        for uid in set(self._written) - alive:
            del self._written[uid]
