"""The /status document and the row-count gauges: a view of the running parts, no logic.

Per owned cluster: a state that sums up its kinds (the supervisor's own phase while it is
not running — waiting for the lease, backing off — else `degraded` if some kind is refused
or failing, `syncing` while some kind has not finished its first full sync, `watching`
when all have), the oldest of its kinds' last full syncs (the cluster is fully synced
once every kind is), active rows per kind (`kinds`; `pods` as in version 1), and per
resource the reconciler's own detail (`sync`). Row counts are cached for `COUNT_TTL`
seconds so a polled /status stays cheap; the same counts feed the `rows` gauge.
No secret appears: specs are shown by `where` (a URL or a kubeconfig path), never tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from reconciler import ClusterId, ClusterSupervisor, Metrics, Phase
from reconciler._cluster import ClusterReconciler

from .kinds import Kind

COUNT_TTL = 2.0
"""Seconds a cluster's row counts are reused by /status and the `rows` gauge."""

_TROUBLE = (Phase.REFUSED, Phase.BACKOFF, Phase.FAILED, Phase.FENCED)


def cluster_state(supervisor: ClusterSupervisor | None, error: str | None) -> str:
    """One word for a cluster: see the module docstring."""
    if supervisor is None:
        return "backoff" if error else "starting"
    if supervisor.status.phase is not Phase.RUNNING:
        return str(supervisor.status.phase)
    phases = [r.status.phase for r in supervisor.reconcilers.values()]
    if any(p in _TROUBLE for p in phases):
        return "degraded"
    if any(r.status.full_syncs == 0 for r in supervisor.reconcilers.values()):
        return "syncing"
    return "watching"


def last_full_sync(supervisor: ClusterSupervisor | None) -> datetime | None:
    """The oldest last full sync over a cluster's kinds; None until every kind has one."""
    if supervisor is None or not supervisor.reconcilers:
        return None
    times = [r.status.last_full_sync for r in supervisor.reconcilers.values()]
    if any(t is None for t in times):
        return None
    return min(t for t in times if t is not None)


@functools.lru_cache(maxsize=16384)
def iso(moment: datetime) -> str:
    """A time as /status shows it, remembered: a polled /status of a fleet shows the same
    few thousand last-full-sync times at every poll, and formatting them was a sixth of
    its cost."""
    return moment.isoformat()


def kind_detail(rec: ClusterReconciler, now: float) -> dict[str, Any]:
    """One resource's reconciler, for `sync` in /status."""
    st = rec.status
    return {
        "state": str(st.phase),
        "last_full_sync": iso(st.last_full_sync) if st.last_full_sync else None,
        "last_full_sync_seconds": st.last_full_sync_seconds,
        "full_syncs": st.full_syncs,
        "version_resets": st.version_resets,
        "events": st.events,
        "events_per_second": st.rate.rate(now),
        "parked": rec.parked,
        "queued": rec.queued,
        "resume_version": st.resume_version,
        "last_error": st.last_error,
    }


def totals(details: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A cluster's figures summed over its kinds (as /status showed them for pods alone).

    `resume_version` is the lowest of the kinds': every kind has passed it, which is what
    a reader waiting for "caught up with version V" needs; `full_syncs` the fewest.
    """
    if not details:
        return {"events": 0, "events_per_second": 0.0, "parked": 0, "queued": 0,
                "resume_version": None, "full_syncs": 0, "last_full_sync_seconds": None}
    events = parked = queued = 0
    rate = 0.0
    resumes: list[Any] = []  # versions, or None for a kind with none yet
    fulls: list[int] = []
    seconds: list[float] = []
    for d in details.values():  # one pass: /status sums eight kinds of every cluster
        events += d["events"]
        rate += d["events_per_second"]
        parked += d["parked"]
        queued += d["queued"]
        resumes.append(d["resume_version"])
        fulls.append(d["full_syncs"])
        if d["last_full_sync_seconds"] is not None:
            seconds.append(d["last_full_sync_seconds"])
    return {
        "events": events,
        "events_per_second": rate,
        "parked": parked,
        "queued": queued,
        "resume_version": None if None in resumes else min(resumes),
        "full_syncs": min(fulls),
        "last_full_sync_seconds": max(seconds) if seconds else None,
    }


Count = Callable[[Kind, Sequence[ClusterId]], Awaitable[Mapping[ClusterId, int]]]
"""Active rows of one kind for each of many clusters (`KindTable.count_active_many`)."""


class RowCounts:
    """Active rows per cluster and kind, cached briefly; feeds /status and the gauge.

    Counted a kind at a time for every cluster that needs it, in a statement or a few:
    counting cluster by cluster made a polled /status of a 200-cluster instance 1,600
    queries, about 4 % of its CPU while its clusters synced."""

    def __init__(self, *, count: Count, metrics: Metrics) -> None:
        self._count = count
        self._metrics = metrics
        self._cache: dict[ClusterId, tuple[float, dict[str, int]]] = {}

    async def of(self, cluster: ClusterId, kinds: Mapping[str, Kind]) -> dict[str, int]:
        """Active rows of `cluster` per kind name (missing when the store is not up)."""
        return (await self.of_many({cluster: kinds}))[cluster]

    async def of_many(self, wanted: Mapping[ClusterId, Mapping[str, Kind]], *,
                      only: Mapping[ClusterId, Collection[str]] | None = None
                      ) -> dict[ClusterId, dict[str, int]]:
        """Active rows of each cluster per kind name (missing when the store is not up):
        the cached counts where under `COUNT_TTL` old, else counted again.

        With `only`, just those kinds of those clusters are counted again and the others
        keep their last counts (a fleet's churn is mostly pods: recounting all eight kinds
        of every cluster that wrote was 160 queries a second at 200 clusters)."""
        now = asyncio.get_running_loop().time()
        todo: dict[str, tuple[Kind, list[ClusterId]]] = {}
        fresh: dict[ClusterId, dict[str, int]] = {}
        for cluster, kinds in wanted.items():
            cached = self._cache.get(cluster)
            kept = cached[1] if cached is not None and set(cached[1]) == set(kinds) else None
            if kept is not None and cached is not None and now - cached[0] < COUNT_TTL \
                    and only is None:
                continue
            fresh[cluster] = dict(kept) if kept is not None else {}
            names = set(kinds) if only is None or kept is None else \
                set(only.get(cluster, ())) & set(kinds)
            for name in names:
                todo.setdefault(name, (kinds[name], []))[1].append(cluster)
        for name, (kind, clusters) in todo.items():
            with contextlib.suppress(Exception):
                found = await self._count(kind, clusters)
                for cluster in clusters:
                    n = fresh[cluster][name] = found.get(cluster, 0)
                    self._metrics.set("rows", {"cluster": cluster, "kind": name}, n)
        for cluster, counts in fresh.items():
            self._cache[cluster] = (now, counts)
        return {cluster: dict(self._cache[cluster][1]) for cluster in wanted}

    def peek(self, cluster: ClusterId) -> dict[str, int]:
        """The last counts of `cluster` without counting again (empty if never counted)."""
        cached = self._cache.get(cluster)
        return dict(cached[1]) if cached is not None else {}

    def forget(self, keep: set[ClusterId]) -> None:
        """Drop cached counts of clusters no longer owned."""
        for cluster in list(self._cache):
            if cluster not in keep:
                del self._cache[cluster]
