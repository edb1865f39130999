"""The controller: makes the set of running reconcilers equal the set of owned clusters.

Level-triggered: the coordinator yields the whole owned set (cluster → fence) each time it
changes, and the controller diffs it against what runs — it never acts on "you gained X"
deltas, so a missed notification cannot leave it wrong. Stops happen before starts
(release before acquire), and a stop is graceful (the reconciler flushes its senders and
releases its lease). Each reconciler runs under a supervisor that rebuilds and restarts
it with jittered backoff when it fails — the Go original never retried a failed start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from reconciler import ClusterId, ClusterReconciler, Fence, Fenced, Metrics
from reconciler._backoff import Backoff

log = logging.getLogger("synchronizer.controller")

Factory = Callable[[ClusterId, Fence], AbstractAsyncContextManager[ClusterReconciler]]
"""Opens a reconciler (and its source) for a cluster, closing them on exit; may raise if
the cluster is unusable (the supervisor then retries with backoff)."""


@dataclass(slots=True)
class _Running:
    fence: Fence
    task: asyncio.Task[None] | None = None
    reconciler: ClusterReconciler | None = None
    stopping: bool = False
    error: str | None = None
    restarts: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)


class Controller:
    """Runs one supervised `ClusterReconciler` per owned cluster."""

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
        self.converged = asyncio.Event()

    @property
    def clusters(self) -> Mapping[ClusterId, _Running]:
        """What runs now, by cluster id."""
        return self._running

    def reconciler(self, cluster: ClusterId) -> ClusterReconciler | None:
        """The live reconciler of `cluster`, if one runs."""
        running = self._running.get(cluster)
        return running.reconciler if running else None

    async def wait_running(self, cluster: ClusterId) -> ClusterReconciler:
        """Wait until `cluster` has a live reconciler (it may still be in its first sync)."""
        while True:
            running = self._running.get(cluster)
            if running is None:
                raise LookupError(f"cluster {cluster} is not owned here")
            await running.live.wait()
            if running.reconciler is not None:
                return running.reconciler

    async def run(self, owned: AsyncIterator[Mapping[ClusterId, Fence]]) -> None:
        """Follow the owned sets until the iterator ends or this task is cancelled."""
        try:
            async for desired in owned:
                await self.converge(desired)
        finally:
            await self.stop_all()

    async def converge(self, desired: Mapping[ClusterId, Fence]) -> None:
        """Stop what is no longer owned (or owned under a new fence), then start the rest."""
        self.converged.clear()
        stale = [c for c, r in self._running.items() if desired.get(c) != r.fence]
        await asyncio.gather(*(self._stop(c) for c in stale))
        for cluster, fence in sorted(desired.items()):
            if cluster not in self._running:
                self._start(cluster, fence)
        self._metrics.set("assigned_clusters", {}, len(desired))
        if stale or desired:
            log.info("running %d clusters (%d stopped)", len(self._running), len(stale))
        self.converged.set()

    async def stop_all(self) -> None:
        """Stop every reconciler gracefully (used on shutdown and on losing coordination)."""
        await asyncio.gather(*(self._stop(c) for c in list(self._running)))

    def _start(self, cluster: ClusterId, fence: Fence) -> None:
        running = _Running(fence=fence)
        running.task = asyncio.create_task(self._supervise(cluster, running),
                                           name=f"supervise:{cluster}")
        self._running[cluster] = running

    async def _stop(self, cluster: ClusterId) -> None:
        running = self._running.get(cluster)
        if running is None or running.task is None:
            return
        running.stopping = True
        if running.reconciler is not None:
            running.reconciler.stop()
        else:
            running.task.cancel()
        try:
            async with asyncio.timeout(self._stop_timeout):
                await asyncio.shield(running.task)
        except TimeoutError:
            log.warning("cluster %s: did not stop in %.0fs; cancelling", cluster,
                        self._stop_timeout)
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
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
                async with self._factory(cluster, running.fence) as reconciler:
                    running.reconciler = reconciler
                    running.live.set()
                    if running.stopping:
                        reconciler.stop()
                    await reconciler.run()
                if running.stopping:
                    return
                raise RuntimeError("reconciler ended on its own")
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
            running.reconciler = None
            running.live.clear()
            await backoff.sleep()
