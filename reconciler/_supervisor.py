"""`ClusterSupervisor`: one lease for a cluster, and every kind's reconciler under it.

Why the lease lives here and not in each reconciler: the lease and its epoch belong to the
cluster. A cluster synced for four kinds runs four reconcilers; if each took and released
the lease itself, the first to stop would release a lease its siblings still write under,
and a successor could start while they flush. So the supervisor takes the lease once
(waiting while another owner holds it, and giving up the wait on `stop()`), renews it
every third of its lifetime, runs the reconcilers in one task group, and on a stop asks
them all to flush before it gives the lease up. Losing the lease (a renewal finds another
owner, or any reconciler's write is `Fenced`) ends every kind of the cluster at once with
`Fenced`: a takeover fences all of them.

Giving the lease up *expires* it rather than deleting it: the row keeps the highest epoch
it has seen, so an older owner that has not yet read the new assignment cannot take the
cluster back with its lower epoch (see the stores' `release`).

Every stop is bounded: reconcilers get `stop_timeout` to flush, then they are cancelled;
the release gets a few seconds, then it is abandoned (the lease expires on its own). A
stopping supervisor renews nothing, and a takeover during its flush is a handover (logged
at info level), not a fencing fault: a rebalance moves clusters between healthy owners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._backoff import Backoff
from ._cluster import ClusterReconciler, leaves
from ._errors import Fenced, StoreError
from ._leases import next_beat
from ._metrics import NullMetrics
from ._protocols import Leases, Metrics
from ._settings import ReconcilerSettings
from ._status import Phase
from ._types import ClusterId, Fence

log = logging.getLogger("reconciler")

RELEASE_TIMEOUT = 5.0
"""Seconds a lease release may take on the way out; past that the lease simply expires."""


@dataclass(slots=True)
class SupervisorStatus:
    """What the supervisor itself reports: the lease side of a cluster's life."""

    cluster: str
    phase: Phase = Phase.STARTING
    last_error: str | None = None


class ClusterSupervisor:
    """Runs a cluster's reconcilers under the cluster's lease; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: ClusterId,
        reconcilers: Sequence[ClusterReconciler],
        leases: Leases | None = None,
        fence: Fence | None = None,
        settings: ReconcilerSettings | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings or ReconcilerSettings()
        self.status = SupervisorStatus(cluster=cluster)
        self._reconcilers = tuple(reconcilers)
        self._leases = leases
        self._fence = fence if leases is not None else None
        self._metrics: Metrics = metrics or NullMetrics()
        self._labels = {"cluster": cluster}
        self._stop = asyncio.Event()

    @property
    def reconcilers(self) -> Mapping[str, ClusterReconciler]:
        """The reconcilers by kind."""
        return {r.kind: r for r in self._reconcilers}

    @property
    def fence(self) -> Fence | None:
        """The fence this supervisor writes under (None: unfenced)."""
        return self._fence

    def stop(self) -> None:
        """Ask `run()` to finish: every reconciler flushes, then the lease is given up."""
        self._stop.set()

    async def wait_synced(self) -> None:
        """Wait until every kind has completed at least one full sync."""
        await asyncio.gather(*(r.wait_synced() for r in self._reconcilers))

    async def run(self) -> None:
        """Hold the lease and run the reconcilers until `stop()`; raise `Fenced` on a loss."""
        if not await self._acquire():
            self.status.phase = Phase.STOPPED
            return
        self.status.phase = Phase.RUNNING
        try:
            async with asyncio.TaskGroup() as tg:
                keeper = tg.create_task(self._keep()) if self._leases is not None else None
                runs = [tg.create_task(r.run(), name=f"run:{self.cluster}:{r.kind}")
                        for r in self._reconcilers]
                await self._stop.wait()
                self.status.phase = Phase.STOPPING
                if keeper is not None:
                    # Stopping: no more renewals. The lease stays ours for the rest of its
                    # lifetime, longer than the flush; a successor that takes it meanwhile
                    # (with a higher epoch) is a handover, not a fault.
                    keeper.cancel()
                for reconciler in self._reconcilers:
                    reconciler.stop()
                _, late = await asyncio.wait(runs, timeout=self.settings.stop_timeout + 1)
                for task in late:
                    log.warning("cluster %s: %s did not stop in time; cancelling",
                                self.cluster, task.get_name())
                    task.cancel()
        except BaseExceptionGroup as group:
            found = leaves(group)
            fenced = [e for e in found if isinstance(e, Fenced)]
            if self._stop.is_set() and len(fenced) == len(found):
                # Fenced while flushing on the way out: the successor already holds the
                # cluster; what was not written is its to write (its full sync lists it).
                log.info("cluster %s: handed over while stopping (%s)", self.cluster, fenced[0])
                self.status.phase = Phase.STOPPED
                return
            self.status.phase = Phase.FENCED if fenced else Phase.FAILED
            first = (fenced or found)[0]
            self.status.last_error = str(first)
            raise first from None
        finally:
            if self.status.phase is not Phase.FENCED:
                await self._release()
            if self.status.phase not in (Phase.FENCED, Phase.FAILED):
                self.status.phase = Phase.STOPPED

    # -- the lease --------------------------------------------------------------------------

    async def _acquire(self) -> bool:
        """Take the lease, waiting while another owner holds it; False if stopped first."""
        if self._leases is None or self._fence is None:
            return True
        settings = self.settings
        backoff = Backoff(settings.backoff_initial,
                          min(settings.backoff_max, settings.lease_ttl / 3))
        while not self._stop.is_set():
            try:
                if await self._leases.acquire(self.cluster, self._fence, settings.lease_ttl):
                    self._metrics.inc("lease_acquisitions_total",
                                      {**self._labels, "result": "acquired"})
                    return True
                result = "busy"
                self.status.phase = Phase.WAITING_LEASE
            except StoreError as exc:
                result = "error"
                self._note(f"lease: {exc}")
            self._metrics.inc("lease_acquisitions_total", {**self._labels, "result": result})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next()):
                    await self._stop.wait()
        return False

    async def _keep(self) -> None:
        assert self._leases is not None and self._fence is not None
        loop = asyncio.get_running_loop()
        period = self.settings.lease_ttl / 3
        while True:
            # On the instance's shared beat, not this cluster's own: every cluster renews
            # at the same instants, so `BatchedLeases` sends one call for all of them.
            await asyncio.sleep(next_beat(loop.time(), period))
            try:
                held = await self._leases.acquire(self.cluster, self._fence,
                                                  self.settings.lease_ttl)
            except StoreError as exc:
                self._note(f"lease renewal: {exc}")
                continue
            if not held:
                raise Fenced(f"cluster {self.cluster}: lease taken over by another owner")

    async def _release(self) -> None:
        if self._leases is None or self._fence is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await asyncio.shield(self._leases.release(self.cluster, self._fence))

    def _note(self, message: str) -> None:
        self.status.last_error = message
        log.warning("cluster %s: %s", self.cluster, message)
