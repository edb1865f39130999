"""The controller: makes the set of running clusters equal the set of owned clusters.

Level-triggered: the coordinator yields the whole owned set (cluster → fence and spec) each
time it changes, and the controller diffs it against what runs — it never acts on "you
gained X" deltas, so a missed notification cannot leave it wrong. A cluster whose fence or
spec changed is stopped and started again under the new one; a spec that only names
another registry (`ClusterSpec` equality ignores where a spec came from) is taken over
without a restart. Stops happen before starts
(release before acquire), and a stop is graceful (every kind's reconciler flushes its
senders, then the cluster's lease is given up) and bounded: past `stop_timeout` the
cluster is cancelled, and a cluster that still will not end is abandoned with a log line
rather than holding up the others or the process's shutdown. Each cluster runs under a
loop that rebuilds and restarts it with jittered backoff when it fails — the Go original
never retried a failed start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from reconciler import ClusterId, ClusterSupervisor, Fenced, Metrics
from reconciler._backoff import Backoff

from .coordination import Assigned

log = logging.getLogger("synchronizer.controller")

Factory = Callable[[ClusterId, Assigned], AbstractAsyncContextManager[ClusterSupervisor]]
"""Opens a cluster's supervisor (its sources, reconcilers and lease) for an assignment,
closing them on exit; may raise if the cluster is unusable (then retried with backoff)."""

ABANDON_AFTER = 5.0
"""Seconds a cancelled cluster may take to unwind before it is abandoned (logged)."""


@dataclass(slots=True)
class _Running:
    assigned: Assigned
    task: asyncio.Task[None] | None = None
    supervisor: ClusterSupervisor | None = None
    stopping: bool = False
    error: str | None = None
    restarts: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)


class Controller:
    """Runs one `ClusterSupervisor` per owned cluster, restarted when it fails."""

    def __init__(
        self,
        *,
        factory: Factory,
        metrics: Metrics,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self._factory = factory
        self._metrics = metrics
        self._backoff = (backoff_initial, backoff_max)
        self._stop_timeout = stop_timeout
        self._running: dict[ClusterId, _Running] = {}
        self._owned = asyncio.Condition()
        self.converged = asyncio.Event()

    @property
    def clusters(self) -> Mapping[ClusterId, _Running]:
        """What runs now, by cluster id."""
        return self._running

    def supervisor(self, cluster: ClusterId) -> ClusterSupervisor | None:
        """The live supervisor of `cluster`, if one runs."""
        running = self._running.get(cluster)
        return running.supervisor if running else None

    async def wait_owned(self, cluster: ClusterId) -> ClusterSupervisor:
        """Wait until `cluster` is owned here and has a live supervisor (for tests and
        tools that start an instance and must not race its first convergence)."""
        async with self._owned:
            await self._owned.wait_for(lambda: cluster in self._running)
        return await self.wait_running(cluster)

    async def wait_running(self, cluster: ClusterId) -> ClusterSupervisor:
        """Wait until `cluster` has a live supervisor (it may still be in its first sync)."""
        while True:
            running = self._running.get(cluster)
            if running is None:
                raise LookupError(f"cluster {cluster} is not owned here")
            await running.live.wait()
            if running.supervisor is not None:
                return running.supervisor

    async def run(self, owned: AsyncIterator[Mapping[ClusterId, Assigned]]) -> None:
        """Follow the owned sets until the iterator ends or this task is cancelled."""
        try:
            async for desired in owned:
                await self.converge(desired)
        finally:
            await self.stop_all()

    async def converge(self, desired: Mapping[ClusterId, Assigned]) -> None:
        """Stop what is no longer owned (or owned under a new fence or spec), then start
        the rest."""
        self.converged.clear()
        stale = [c for c, r in self._running.items() if desired.get(c) != r.assigned]
        await asyncio.gather(*(self._stop(c) for c in stale))
        for cluster, assigned in sorted(desired.items()):
            if cluster not in self._running:
                self._start(cluster, assigned)
            else:  # equal (same fence and connection), perhaps from another registry now
                self._running[cluster].assigned = assigned
        self._metrics.set("assigned_clusters", {}, len(desired))
        async with self._owned:
            self._owned.notify_all()
        if stale or desired:
            log.info("running %d clusters (%d stopped)", len(self._running), len(stale))
        self.converged.set()

    async def stop_all(self) -> None:
        """Stop every reconciler gracefully (used on shutdown and on losing coordination)."""
        await asyncio.gather(*(self._stop(c) for c in list(self._running)))

    def _start(self, cluster: ClusterId, assigned: Assigned) -> None:
        running = _Running(assigned=assigned)
        running.task = asyncio.create_task(self._supervise(cluster, running),
                                           name=f"supervise:{cluster}")
        self._running[cluster] = running

    async def _stop(self, cluster: ClusterId) -> None:
        running = self._running.get(cluster)
        if running is None or running.task is None:
            return
        running.stopping = True
        if running.supervisor is not None:
            running.supervisor.stop()
        else:
            running.task.cancel()
        try:
            async with asyncio.timeout(self._stop_timeout):
                await asyncio.shield(running.task)
        except TimeoutError:
            log.warning("cluster %s: did not stop in %.0fs; cancelling", cluster,
                        self._stop_timeout)
            running.task.cancel()
            done, _ = await asyncio.wait([running.task], timeout=ABANDON_AFTER)
            if not done:
                log.error("cluster %s: still not stopped %.0fs after cancelling; abandoned",
                          cluster, ABANDON_AFTER)
        except asyncio.CancelledError:
            if not running.task.done():
                raise
        finally:
            self._running.pop(cluster, None)
            forget = getattr(self._metrics, "forget", None)
            if forget is not None:
                forget(cluster)

    async def _supervise(self, cluster: ClusterId, running: _Running) -> None:
        backoff = Backoff(*self._backoff)
        labels = {"cluster": cluster}
        while not running.stopping:
            try:
                async with self._factory(cluster, running.assigned) as supervisor:
                    running.supervisor = supervisor
                    running.live.set()
                    if running.stopping:
                        supervisor.stop()
                    await supervisor.run()
                if running.stopping:
                    return
                raise RuntimeError("cluster supervisor ended on its own")
            except asyncio.CancelledError:
                raise
            except Fenced as exc:
                running.error = str(exc)
                log.warning("cluster %s: fenced (%s); waiting to own it again", cluster, exc)
            except Exception as exc:
                running.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.error("cluster %s: reconciler failed: %s", cluster, running.error)
            if running.stopping:
                return
            running.restarts += 1
            self._metrics.inc("reconciler_restarts_total", labels)
            running.supervisor = None
            running.live.clear()
            await backoff.sleep()
