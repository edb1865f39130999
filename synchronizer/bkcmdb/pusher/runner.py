"""The task runner: takes due push tasks of the clusters this instance owns and runs them.

One runner per instance, `concurrency` workers. Each worker loops: make sure every owned
cluster has its task (`ensure`), take one due task (the claim moves its `next_start` to
now + `hold`), run the push outside any transaction while a keeper extends the claim every
`hold / 3`, close the task with the push's result and the next start, repeat; with nothing
due it waits for `wake()` or `poll` seconds. Bounded concurrency comes from the number of
workers; one-at-a-time per cluster comes from the claim.

What a push does depends on when this cluster's last full reconcile and sweep were:
`FULL` (list bk-cmdb and repair) every `interval`, `SWEEP` (read every row) every `sweep`,
else `INCREMENTAL`. The first push of a cluster in this process is always `FULL`, and so is
the first after another instance held the task (the token the claim carries is not the one
after ours): whatever happened meanwhile, the ledger cache is dropped and bk-cmdb is listed.

When to run next, from the report:
- an error that stopped the push (transient, or a whole-cluster one such as bad
  credentials): jittered exponential backoff, `backoff_initial` doubling to `backoff_max`,
  counted in `attempts`; an error that only made some objects wait (a business without
  the default module) is reported but scheduled like pending objects;
- objects still pending (no host, containers without id, dead letters …): `retry_pending`;
- equal: `period` — and never later than the next full reconcile.
A removed cluster whose report says `finished` has its task dropped (and is not given a new
one while `targets` still names it as removed).

Dying is allowed at any moment: a runner that stops without closing leaves the claim to
expire, and the next taker finishes the job (every push is idempotent). Stopping politely
(`stop`) lets running pushes finish for `grace` seconds, then interrupts them and closes
their tasks due at once, so the next owner does not wait for the claim to expire. A push
whose cluster is no longer owned, or whose claim was lost (the keeper could not extend it),
is interrupted the same way.

Time: `clock` is wall time (the task table's `next_start` is compared across instances) and
`sleep` waits on it; both are injected, so tests drive the runner with a manual clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .pusher import ClusterTarget, Pusher
from .report import PushMode, PushReport
from .status import PushObserver
from .tasks import PUSH_JOB, Task, TaskQueue

log = logging.getLogger("synchronizer.bkcmdb.runner")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Targets = Callable[[], Mapping[str, ClusterTarget]]
RESULT_CHARS = 500
"""Characters of a push summary stored in the task row."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerSettings:
    """How often, how many at once, how long a claim lasts."""

    interval: float = 600.0
    """Seconds between full reconciles of a cluster (CONTRACT `bkcmdb.interval`)."""
    period: float = 10.0
    """Seconds between pushes of a cluster whose bk-cmdb equals its tables."""
    sweep: float = 60.0
    """Seconds between whole reads of a cluster's tables (see `desired`)."""
    retry_pending: float = 30.0
    """Seconds before pushing again a cluster with objects waiting (for a host, an id …)."""
    hold: float = 300.0
    """Seconds a claim lasts; a running push extends it every third of that."""
    concurrency: int = 4
    """Pushes running at once in this instance."""
    backoff_initial: float = 5.0
    backoff_max: float = 300.0
    poll: float = 2.0
    """Seconds an idle worker waits before looking for due tasks again (`wake` is sooner)."""
    grace: float = 10.0
    """Seconds running pushes may take to finish after `stop`."""

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.hold <= 0 or min(self.period, self.interval,
                                                          self.poll) <= 0:
            raise ValueError("runner settings: concurrency >= 1 and positive times needed")


class TaskRunner:
    """Runs the push tasks of the clusters `targets()` names (the ones this instance owns)."""

    def __init__(self, *, pusher: Pusher, queue: TaskQueue, targets: Targets, owner: str,
                 clock: Clock, sleep: Sleep, settings: RunnerSettings | None = None,
                 observer: PushObserver | None = None, rng: random.Random | None = None,
                 job: str = PUSH_JOB) -> None:
        self._pusher, self._queue, self._targets = pusher, queue, targets
        self.owner, self._clock, self._sleep = owner, clock, sleep
        self.settings = settings or RunnerSettings()
        self._observer = observer
        self._rng = rng or random.Random()
        self._job = job
        self._ensured: set[str] = set()
        self._finished: set[str] = set()
        """Removed clusters emptied here: no task is made for them again while removed."""
        self._full_due: dict[str, float] = {}
        self._sweep_due: dict[str, float] = {}
        self._closed_token: dict[str, int] = {}
        self._running: dict[str, asyncio.Task[PushReport]] = {}
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    # -- control ----------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due tasks now (e.g. the tables just changed)."""
        self._wakeup.set()

    def resweep(self, cluster: str) -> None:
        """Read every row of `cluster` at its next push (its tables just had a full sync,
        whose rows carry an older version than a watermark may have passed)."""
        if cluster in self._sweep_due:
            self._sweep_due[cluster] = min(self._sweep_due[cluster], self._clock())

    def stop(self) -> None:
        """Stop taking tasks; `run` returns once running pushes end (after `grace` at most)."""
        self._stopping.set()
        self._wakeup.set()

    @property
    def running(self) -> list[str]:
        """Clusters being pushed now."""
        return sorted(self._running)

    async def run(self) -> None:
        """Run until `stop()`: `concurrency` workers and a reaper for the grace period."""
        async with asyncio.TaskGroup() as group:
            reaper = group.create_task(self._reap())
            workers = [group.create_task(self._worker()) for _ in range(self.settings.concurrency)]
            await asyncio.gather(*workers)
            reaper.cancel()

    async def run_once(self) -> list[PushReport]:
        """Take up to `concurrency` due tasks and run them together; their reports."""
        await self._sync_targets()
        taken = []
        for _ in range(self.settings.concurrency):
            task = await self._take()
            if task is None:
                break
            taken.append(task)
        async with asyncio.TaskGroup() as group:
            runs = [group.create_task(self._run(task)) for task in taken]
        return [r for r in (run.result() for run in runs) if r is not None]

    # -- the loop ---------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._sync_targets()
                task = await self._take()
            except Exception as exc:  # the task store is down: wait and look again
                log.warning("bk-cmdb tasks unavailable: %s", exc)
                task = None
            if task is None:
                await self._idle()
                continue
            try:
                await self._run(task)
            except Exception as exc:  # the close failed: the claim expires, someone retries
                log.error("cluster %s: the push task could not be closed: %s: %s",
                          task.cluster, type(exc).__name__, exc)
                self._pusher.forget(task.cluster)
                self._closed_token.pop(task.cluster, None)

    async def _idle(self) -> None:
        woken = asyncio.ensure_future(self._wakeup.wait())
        nap = asyncio.ensure_future(self._sleep(self.settings.poll))
        try:
            await asyncio.wait({woken, nap}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            nap.cancel()
        if not self._stopping.is_set():
            self._wakeup.clear()

    async def _reap(self) -> None:
        await self._stopping.wait()
        if self._running:
            await self._sleep(self.settings.grace)
        for job in list(self._running.values()):
            job.cancel()

    def _wanted(self) -> dict[str, ClusterTarget]:
        targets = dict(self._targets())
        for cluster in list(self._finished):
            target = targets.get(cluster)
            if target is None or not target.removed:
                self._finished.discard(cluster)  # back (or gone for good): forget the mark
            else:
                del targets[cluster]
        return targets

    async def _sync_targets(self) -> None:
        targets = self._wanted()
        for cluster in sorted(set(targets) - self._ensured):
            await self._queue.ensure(cluster, self._job)
            self._ensured.add(cluster)
        for cluster in sorted(self._ensured - set(targets)):
            self._ensured.discard(cluster)
            self._forget(cluster)

    def _forget(self, cluster: str) -> None:
        self._pusher.forget(cluster)
        self._full_due.pop(cluster, None)
        self._sweep_due.pop(cluster, None)
        self._closed_token.pop(cluster, None)
        if self._observer is not None:
            self._observer.dropped(cluster)

    async def _take(self) -> Task | None:
        if self._stopping.is_set():
            return None
        return await self._queue.take(self.owner, self.settings.hold,
                                      clusters=list(self._wanted()))

    # -- one task ---------------------------------------------------------------------------------

    def _mode(self, task: Task, now: float) -> PushMode:
        if self._closed_token.get(task.cluster, -1) != task.token - 1:
            # first push here, or someone else pushed since: the cache may be stale
            self._pusher.forget(task.cluster)
            self._full_due[task.cluster] = now
        if now >= self._full_due.get(task.cluster, now):
            return PushMode.FULL
        if now >= self._sweep_due.get(task.cluster, now):
            return PushMode.SWEEP
        return PushMode.INCREMENTAL

    async def _run(self, task: Task) -> PushReport | None:
        target = self._targets().get(task.cluster)
        now = self._clock()
        if target is None:  # not ours any more: hand it back at once
            await self._queue.close(task, result="not owned here", error=task.error,
                                    attempts=task.attempts, next_start=now,
                                    pending=task.pending)
            return None
        mode = self._mode(task, now)
        job = asyncio.create_task(self._pusher.push(target, mode=mode))
        self._running[task.cluster] = job
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep(task, job, lost))
        try:
            report = await job
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this runner is being torn down: leave the claim to expire
            if not lost.is_set():
                await self._queue.close(task, result=f"interrupted ({mode} push)",
                                        error=task.error, attempts=task.attempts,
                                        next_start=self._clock(), pending=task.pending)
            self._pusher.forget(task.cluster)
            log.info("cluster %s: push interrupted", task.cluster)
            return None
        finally:
            keeper.cancel()
            self._running.pop(task.cluster, None)
        await self._finish(task, target, mode, report)
        return report

    async def _keep(self, task: Task, job: asyncio.Task[PushReport], lost: asyncio.Event) -> None:
        """Extend the claim while the push runs; interrupt it if the claim or the cluster is
        lost."""
        while not job.done():
            await self._sleep(self.settings.hold / 3)
            if job.done():
                return
            if task.cluster not in self._targets():
                log.info("cluster %s: no longer owned; interrupting its push", task.cluster)
                job.cancel()
                return
            if await self._queue.extend(task, self.settings.hold) is None:
                log.warning("cluster %s: the push task was taken over; interrupting",
                            task.cluster)
                lost.set()
                job.cancel()
                return

    async def _finish(self, task: Task, target: ClusterTarget, mode: PushMode,
                      report: PushReport) -> None:
        s = self.settings
        now = self._clock()
        if report.error is None or not report.error.stopped:
            if mode is PushMode.FULL:
                self._full_due[task.cluster] = now + s.interval
            if mode is not PushMode.INCREMENTAL:
                self._sweep_due[task.cluster] = now + s.sweep
        if report.finished and target.removed:
            await self._queue.drop(task.cluster, self._job)
            self._ensured.discard(task.cluster)
            self._finished.add(task.cluster)
            self._forget(task.cluster)
            log.info("cluster %s: removed from bk-cmdb", task.cluster)
            return
        if report.error is not None and report.error.stopped:
            attempts = task.attempts + 1
            next_start = now + self.backoff(attempts)
        else:
            attempts = 0
            wait = s.retry_pending if report.pending_total else s.period
            next_start = min(now + wait, self._full_due.get(task.cluster, now + wait))
        closed = await self._queue.close(
            task, result=report.summary()[:RESULT_CHARS],
            error=report.error.message if report.error is not None else "",
            attempts=attempts, next_start=next_start, pending=report.pending_total)
        if closed:
            self._closed_token[task.cluster] = task.token
        else:
            log.warning("cluster %s: the push task was taken over before it closed",
                        task.cluster)
            self._pusher.forget(task.cluster)
            self._closed_token.pop(task.cluster, None)
        if self._observer is not None:
            self._observer.pushed(task.cluster, report, at=now)

    def backoff(self, attempts: int) -> float:
        """Full-jitter delay after `attempts` failed runs in a row."""
        s = self.settings
        ceiling = min(s.backoff_max, s.backoff_initial * 2 ** min(attempts - 1, 30))
        return self._rng.uniform(min(s.backoff_initial / 2, ceiling), ceiling)
