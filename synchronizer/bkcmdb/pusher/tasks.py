"""Durable tasks: one row per (cluster, job), claimed by moving its start time forward.

The pattern of the MWS control plane (DESIGN §8). A task is due when `next_start <= now`.
To run it, an instance *takes* it in one short transaction that sets `next_start` to
`now + hold` (the claim's timeout) and bumps `token`: until then nobody else may take it,
so a cluster is pushed by one instance at a time. The work itself (minutes of HTTP calls)
runs outside any transaction. A second short transaction *closes* the task with its result, error,
attempt count and the next start the runner chose; the close names the token it took, so
a runner that was presumed dead (its timeout passed and another took the task) cannot
overwrite the newer claim. A runner that dies simply never closes: once its `next_start`
passes, the task is due again and anyone takes it. That gives at-least-once, one-at-a-time
per cluster, across crashes and handoffs; a long run keeps its claim by `extend`ing it.
"What is still pending" is a query over the rows (`pending`, `status`).

The in-memory `MemoryTaskQueue` is the reference; a SQL one is a straight translation, on a
table `bkcmdb_tasks(cluster_id, job, next_start DOUBLE, token BIGINT, owner, attempts,
pending, result, error, started_at, finished_at)`, primary key `(cluster_id, job)`, index
on `next_start`:

- `ensure`: `INSERT … ON DUPLICATE KEY UPDATE cluster_id = cluster_id` (SQLite: `INSERT OR
  IGNORE`) with `next_start = now`, token 0.
- `take`: MySQL: `BEGIN; SELECT cluster_id, job FROM bkcmdb_tasks WHERE next_start <= :now
  AND cluster_id IN (:owned) ORDER BY next_start LIMIT 1 FOR UPDATE SKIP LOCKED; UPDATE …
  SET next_start = :now + :hold, token = token + 1, owner = :owner, started_at = :now
  WHERE cluster_id = ? AND job = ?; COMMIT`. SQLite (no row locks): read the candidate's
  token, then `UPDATE … WHERE cluster_id = ? AND job = ? AND token = :seen AND next_start <=
  :now` and check that one row changed; if none did, another instance won — try the next.
- `extend` / `close`: `UPDATE … WHERE cluster_id = ? AND job = ? AND token = :token`, one
  row changed or the claim was lost.

Times are wall-clock seconds (epoch) from an injected clock, since several instances compare
them; only the order of `now` and `next_start` matters, so a small clock skew between
instances only shifts when a dead runner's task is taken over.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Protocol

Clock = Callable[[], float]

PUSH_JOB = "bkcmdb-push"
"""The job that makes a cluster's bk-cmdb objects equal to its tables."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One durable task, as last read or written."""

    cluster: str
    job: str
    next_start: float
    token: int = 0
    """Bumped by every take; `extend` and `close` must name the token they took."""
    owner: str = ""
    attempts: int = 0
    """Consecutive runs that ended in an error (the backoff exponent)."""
    pending: int = 0
    """Objects not yet equal after the last run."""
    result: str = ""
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None


class TaskQueue(Protocol):
    """Create, claim, keep and close durable tasks."""

    async def ensure(self, cluster: str, job: str) -> None:
        """Create the task, due now, unless it exists."""
        ...

    async def take(self, owner: str, hold: float, *,
                   clusters: Collection[str]) -> Task | None:
        """Claim one due task of `clusters` until now + `hold`; None if none is due."""
        ...

    async def extend(self, task: Task, hold: float) -> Task | None:
        """Keep the claim until now + `hold`; None if the claim was lost."""
        ...

    async def close(self, task: Task, *, result: str, error: str, attempts: int,
                    next_start: float, pending: int = 0) -> bool:
        """End the run; False if the claim had been lost (nothing written)."""
        ...

    async def drop(self, cluster: str, job: str) -> None:
        """Remove the task (its cluster is gone and cleaned up)."""
        ...


class TaskBoard(Protocol):
    """Read tasks, for `/status` and metrics."""

    async def pending(self) -> list[Task]:
        """Tasks whose last run left objects pending or ended in an error."""
        ...

    async def status(self, cluster: str) -> list[Task]:
        """Every task of one cluster."""
        ...

    async def clusters(self, job: str) -> list[str]:
        """Every cluster with a task of `job` (a removed cluster keeps its task until it is
        emptied in bk-cmdb, so this is also how a removal is found)."""
        ...


class MemoryTaskQueue:
    """`TaskQueue` and `TaskBoard` in a dict, on an injected clock.

    Every method runs without awaiting anything, so on one event loop each is atomic — the
    property a SQL implementation gets from its transaction.
    """

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self.tasks: dict[tuple[str, str], Task] = {}

    async def ensure(self, cluster: str, job: str) -> None:
        """Create the task, due now, unless it exists."""
        self.tasks.setdefault((cluster, job), Task(cluster=cluster, job=job,
                                                   next_start=self._clock()))

    async def take(self, owner: str, hold: float, *,
                   clusters: Collection[str]) -> Task | None:
        """Claim the task due longest, among `clusters`."""
        now = self._clock()
        due = [t for t in self.tasks.values() if t.next_start <= now and t.cluster in clusters]
        if not due:
            return None
        task = min(due, key=lambda t: (t.next_start, t.cluster, t.job))
        taken = replace(task, next_start=now + hold, token=task.token + 1, owner=owner,
                        started_at=now)
        self.tasks[(task.cluster, task.job)] = taken
        return taken

    def _held(self, task: Task) -> Task | None:
        stored = self.tasks.get((task.cluster, task.job))
        return stored if stored is not None and stored.token == task.token else None

    async def extend(self, task: Task, hold: float) -> Task | None:
        """Move the claim's end forward, if it is still ours."""
        stored = self._held(task)
        if stored is None:
            return None
        extended = replace(stored, next_start=self._clock() + hold)
        self.tasks[(task.cluster, task.job)] = extended
        return extended

    async def close(self, task: Task, *, result: str, error: str, attempts: int,
                    next_start: float, pending: int = 0) -> bool:
        """Record the run's outcome and the next start, if the claim is still ours."""
        stored = self._held(task)
        if stored is None:
            return False
        self.tasks[(task.cluster, task.job)] = replace(
            stored, result=result, error=error, attempts=attempts, next_start=next_start,
            pending=pending, finished_at=self._clock())
        return True

    async def drop(self, cluster: str, job: str) -> None:
        """Remove the task."""
        self.tasks.pop((cluster, job), None)

    async def pending(self) -> list[Task]:
        """Tasks with objects pending or an error."""
        return sorted((t for t in self.tasks.values() if t.pending or t.error),
                      key=lambda t: (t.cluster, t.job))

    async def status(self, cluster: str) -> list[Task]:
        """Every task of `cluster`."""
        return sorted((t for t in self.tasks.values() if t.cluster == cluster),
                      key=lambda t: t.job)

    async def clusters(self, job: str) -> list[str]:
        """Every cluster with a task of `job`."""
        return sorted(c for (c, j) in self.tasks if j == job)
