"""The writer: one pool of senders for every cluster and kind of an instance.

Why one pool: an instance owning hundreds of small clusters sees a few events per cluster
per second. With a sender pool per cluster and kind, batches never fill, so every event
became a transaction of its own, with its own fence check: most of the CPU of a quiet
fleet went to transaction overhead. Here every reconciler (a *scope*: one resource of one
cluster, writing one store view under one fence) hands its records to the same shards,
and a sender's batch carries records of many scopes. With a store that can (`MultiStore`),
the whole batch is one transaction in which each cluster's rows are fenced by that
cluster's own lease: a fenced cluster's rows are refused, the others are applied.

Order and batches are the queue's (`_shards`): every version of one object lands in one
shard, a shard is in one batch at a time, and one sender at a time collects the next batch
over every shard not in flight. Versions only go forward: each scope remembers the highest
version it has taken of each key and drops an older record (`superseded_total`), which is
what lets the store skip writes of a newer version with unchanged content
(docs/designs/006).

Memory: one budget bounds the records queued here plus those parked by the scopes' gates,
over the whole instance. A scope may add while the instance is under its budget, or while
it holds less than its fair share (budget / scopes); otherwise its producer waits (back-
pressure on that scope's watch or list only) and its gate overflows (another full sync of
that scope only). A hot cluster thus cannot starve the others, and the total stays within
twice the budget in the worst case.

Failure stays with the scope that fails. A transaction of many scopes that fails as a
whole is retried at once scope by scope, so one cluster's trouble (a row lock held
elsewhere, a lock-wait timeout) does not hold back the rows of the others. A scope whose
own write fails is *set aside*: its records leave the shards for the scope's `held` map
(a newer version still replaces an older one), and the senders carry on with everybody
else; after a jittered backoff of its own, its records go back to the shards and are
tried again. A scope found fenced is closed — its queued records dropped, its producers
released with `QueueClosed`, and `Scope.fenced` resolved so its reconciler ends with
`Fenced`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ._backoff import Backoff
from ._errors import Fenced, QueueClosed, StoreError
from ._metrics import MetricChild, bound
from ._protocols import Metrics, Store
from ._shards import Shard, ShardQueue
from ._types import ApplyResult, ClusterId, Fence, ObjectKey, Record

log = logging.getLogger("reconciler.writer")

GAUGE_PERIOD = 1.0
"""Seconds between refreshes of the queue gauges of every scope."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterSettings:
    """Knobs of an instance's writer."""

    senders: int = 8
    """Sender coroutines; an object always goes to the same one, so its order is kept."""
    batch_size: int = 500
    """Most records one sender writes in one transaction."""
    linger: float = 0.1
    """Seconds the collecting sender waits for a batch to fill before writing what it has."""
    max_scopes: int = 64
    """Most scopes (one resource of one cluster each) a transaction carries (`Shard.take`)."""
    budget: int = 200_000
    """Records queued plus parked, over every scope, before fair shares apply."""
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    apply_retries: int = 0
    """Transient write failures retried before giving up a batch; 0 means retry forever."""


@dataclass(frozen=True, slots=True)
class WriteGroup:
    """One scope's part of a batch: its records, where they go, under which fence."""

    cluster: ClusterId
    store: Store
    fence: Fence | None
    records: Sequence[Record]


class MultiStore(Protocol):
    """A store that writes the groups of many scopes in one transaction."""

    async def apply_groups(self, groups: Sequence[WriteGroup]
                           ) -> Sequence[ApplyResult | BaseException]:
        """Apply every group under the merge rule in one transaction; per group, its
        result or the exception that refused it (`Fenced` for a cluster another owner
        holds: its rows are not written, the other groups' are). Raises `StoreError`
        when the transaction as a whole failed (nothing written)."""
        ...


class Scope:
    """One reconciler's share of the writer: put records, wait for them to be written."""

    def __init__(self, writer: Writer, sid: int, *, cluster: ClusterId, store: Store,
                 fence: Fence | None, labels: Mapping[str, str],
                 clock: Callable[[], datetime]) -> None:
        self._writer = writer
        self.sid = sid
        self.cluster = cluster
        self.store = store
        self.fence = fence
        self.labels = dict(labels)
        self.clock = clock
        self.queued = 0
        self._parked = 0
        self.inflight = 0
        self.closed = False
        self.fenced: asyncio.Future[Fenced] = asyncio.get_running_loop().create_future()
        self._taken: dict[ObjectKey, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self.superseded = 0
        self.written = 0
        self.held: dict[ObjectKey, Record] = {}
        """Its records while it is set aside (counted in `queued`)."""
        self.retry_at: float | None = None
        """Loop time after which a scope set aside is tried again; None: not set aside."""
        self.failures = 0
        self.backoff = Backoff(writer.settings.backoff_initial, writer.settings.backoff_max)
        self.failing: tuple[float, str] | None = None
        """(loop time of the first failure, last error) while its writes keep failing."""
        self.shown: tuple[int, int] = (-1, -1)
        """(parked, queued) as the gauges last showed them."""
        self.lagging = False
        """A delivered batch set the lag gauge, and no tick has since shown the scope idle."""
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], MetricChild] = {}

    def series(self, name: str, **extra: str) -> MetricChild:
        """The metric series `name` of this scope (its labels plus `extra`), bound once:
        delivering a batch updates a handful of them, and each record's lag."""
        key = (name, tuple(extra.items()))
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = bound(self._writer.metrics, name,
                                              {**self.labels, **extra})
        return child

    @property
    def depth(self) -> int:
        """Records of this scope waiting to be written (not counting a batch in flight)."""
        return self.queued

    @property
    def used(self) -> int:
        """What this scope holds of the instance's budget: queued plus parked."""
        return self.queued + self._parked

    @property
    def parked(self) -> int:
        """Events its gate holds now (they count toward the budget)."""
        return self._parked

    def set_parked(self, n: int) -> None:
        """The gate's count of parked events changed."""
        self._writer.adjust(n - self._parked)
        self._parked = n
        self._writer.touch(self)

    def may_park(self) -> bool:
        """Whether the scope's gate may park one more event (see the budget)."""
        return self._writer.allows(self)

    async def put(self, record: Record) -> None:
        """Queue a record; waits while this scope is over its share of a full budget.

        Raises `QueueClosed` once the scope is closed (fenced, or the writer stopped).
        """
        if self.closed:
            raise QueueClosed("the writer no longer takes this scope's records")
        key = record.key
        if record.version < self._taken.get(key, 0):
            self.superseded += 1
            self._writer.metrics.inc("superseded_total", self.labels)
            return
        while not self._writer.allows(self) and not self._writer.pending(self, key):
            await self._writer.wait_room(self)
            if self.closed:
                raise QueueClosed("the writer no longer takes this scope's records")
        if record.deleted:
            self._taken.pop(key, None)
        else:
            self._taken[key] = record.version
        self._idle.clear()
        self._writer.enqueue(self, record)

    def forget_versions(self) -> None:
        """Drop the versions taken so far: the cluster's versions went backwards (see
        `ClusterReconciler`), and the new incarnation's records must not be superseded by
        the old one's."""
        self._taken.clear()

    async def drained(self) -> None:
        """Return once every record put so far has been written (or refused).

        Raises `QueueClosed` if the scope was closed with records unwritten.
        """
        await self._idle.wait()
        if self.closed:
            raise QueueClosed("the scope was closed with records unwritten")

    def close(self) -> None:
        """Leave the writer: drop what is queued, release every waiter."""
        self._writer.remove(self)

    # -- the writer's side ------------------------------------------------------------------

    def _settle(self) -> None:
        if self.queued == 0 and self.inflight == 0:
            self._idle.set()


def _hold(scope: Scope, record: Record) -> bool:
    """Keep `record` among the scope's held ones (newest version per key); True when its
    key was not held yet."""
    waiting = scope.held.get(record.key)
    if waiting is None:
        scope.held[record.key] = record
        return True
    if waiting.version <= record.version:
        scope.held[record.key] = record
    return False


class Writer:
    """The senders of an instance; see the module docstring."""

    def __init__(self, *, settings: WriterSettings | None = None, metrics: Metrics,
                 multi: MultiStore | None = None) -> None:
        self.settings = settings or WriterSettings()
        self.metrics = metrics
        self._multi = multi
        self._queue = ShardQueue(self.settings)
        self._shards = self._queue.shards
        self._scopes: dict[int, Scope] = {}
        self._ids = itertools.count(1)
        self._used = 0
        """Queued plus parked records over every scope."""
        self._waiting: set[Scope] = set()
        self._aside: set[Scope] = set()
        self._aside_changed = asyncio.Event()
        self._touched: set[Scope] = set()
        """Scopes whose gauges may show something else at the next tick (a fleet's
        thousands of scopes are mostly at rest: looking at each every second was a few per
        cent of a quiet fleet's CPU)."""

    # -- scopes -----------------------------------------------------------------------------

    def scope(self, *, cluster: ClusterId, store: Store, fence: Fence | None,
              labels: Mapping[str, str], clock: Callable[[], datetime]) -> Scope:
        """Register a scope (one reconciler); `Scope.close` unregisters it."""
        sid = next(self._ids)
        scope = Scope(self, sid, cluster=cluster, store=store, fence=fence, labels=labels,
                      clock=clock)
        self._scopes[sid] = scope
        self._touched.add(scope)
        return scope

    def touch(self, scope: Scope) -> None:
        """`scope`'s queue figures or lag changed: look at its gauges at the next tick."""
        self._touched.add(scope)

    @property
    def queued(self) -> int:
        """Records waiting in every shard."""
        return sum(len(s.pending) for s in self._shards)

    @property
    def used(self) -> int:
        """Queued plus parked records over every scope (what the budget bounds)."""
        return self._used

    def allows(self, scope: Scope) -> bool:
        """Whether `scope` may add a record: under budget, or under its fair share."""
        if self._used < self.settings.budget:
            return True
        return scope.used < self.settings.budget // max(1, len(self._scopes))

    def adjust(self, delta: int) -> None:
        """Parked events came or went (a gate parked, replayed or dropped them)."""
        self._used += delta
        if delta < 0 and self._waiting and self._used < self.settings.budget:
            self._wake_all()

    async def wait_room(self, scope: Scope) -> None:
        """Wait until `scope` may be allowed to add again (a wake-up, then re-check)."""
        self._waiting.add(scope)
        scope._room.clear()
        try:
            await scope._room.wait()
        finally:
            self._waiting.discard(scope)

    def pending(self, scope: Scope, key: ObjectKey) -> bool:
        """Whether a record of `key` already waits (a newer one replaces it: no growth)."""
        return (scope.sid, key) in self._shard_of(scope, key).pending

    def _shard_of(self, scope: Scope, key: ObjectKey) -> Shard:
        return self._queue.shard_of(scope.sid, key)

    def enqueue(self, scope: Scope, record: Record) -> None:
        """Put a record on its shard, replacing an older waiting version of its key."""
        self._touched.add(scope)
        if scope.retry_at is not None:
            if _hold(scope, record):
                scope.queued += 1
                self._used += 1
            return
        shard = self._shard_of(scope, record.key)
        slot = (scope.sid, record.key)
        waiting = shard.pending.get(slot)
        if waiting is not None:
            if waiting[1].version > record.version:
                return
            shard.pending[slot] = (scope, record)
            return
        self._queue.add(shard, slot, (scope, record))
        scope.queued += 1
        self._used += 1

    def remove(self, scope: Scope, error: Fenced | None = None) -> None:
        """Close a scope: drop its queued records, release its producers and waiters."""
        if scope.closed:
            return
        scope.closed = True
        for shard in self._shards:
            mine = [k for k, (s, _) in shard.pending.items() if s is scope]
            for k in mine:
                del shard.pending[k]
            self._used -= len(mine)
        self._used -= len(scope.held)
        scope.held.clear()
        scope.retry_at = None
        self._aside.discard(scope)
        scope.queued = 0
        self._used -= scope._parked
        scope._parked = 0
        self._scopes.pop(scope.sid, None)
        if error is not None and not scope.fenced.done():
            scope.fenced.set_result(error)
        scope._room.set()
        scope._idle.set()
        self._wake_all()

    def _wake_all(self) -> None:
        for scope in self._waiting:
            scope._room.set()

    # -- senders ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the senders until cancelled; on the way out every scope is closed."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._gauges())
                tg.create_task(self._resume_loop())
                for _ in self._shards:
                    tg.create_task(self._send())
        finally:
            for scope in list(self._scopes.values()):
                self.remove(scope)

    async def _gauges(self) -> None:
        """Once a second, `show_gauges` (one task for the whole instance: a timer per
        reconciler was most of an idle fleet's CPU)."""
        while True:
            self.show_gauges()
            await asyncio.sleep(GAUGE_PERIOD)

    def show_gauges(self) -> None:
        """Set the queue gauges of every scope whose figures changed since the last call;
        lag reads 0 once nothing of a scope waits to be written or is in flight. Looks
        only at the scopes touched since, and at those not yet at rest."""
        metrics = self.metrics
        touched, self._touched = self._touched, set()
        for scope in touched:
            if scope.closed:
                continue
            shown = (scope._parked, scope.queued)
            if shown != scope.shown:
                metrics.set("parked_events", scope.labels, shown[0])
                metrics.set("sender_queue_depth", scope.labels, shown[1])
                scope.shown = shown
            if scope.lagging and shown == (0, 0) and scope.inflight == 0:
                # (its own flag, not a change of `shown`: a batch in flight at one call
                # and delivered before the next changes neither figure)
                metrics.set("lag_seconds", scope.labels, 0)
                scope.lagging = False
            if shown != (0, 0) or scope.lagging or scope.inflight:
                self._touched.add(scope)  # not at rest: look again at the next tick

    async def _send(self) -> None:
        settings = self.settings
        while True:
            taken, shards = await self._queue.collect()
            groups: dict[int, list[Record]] = {}
            scopes: dict[int, Scope] = {}
            for scope, record in taken:
                if scope.closed:
                    continue
                groups.setdefault(scope.sid, []).append(record)
                scopes[scope.sid] = scope
                scope.queued -= 1
                scope.inflight += 1
            self._used -= len(taken)
            if self._waiting:
                if self._used < settings.budget:
                    self._wake_all()
                else:
                    for scope in scopes.values():
                        scope._room.set()  # its own share shrank
            try:
                await self._write([(scopes[sid], records) for sid, records in groups.items()])
            finally:
                for sid, records in groups.items():
                    scope = scopes[sid]
                    scope.inflight -= len(records)
                    scope._settle()
                self._queue.release(shards)

    async def _write(self, parts: list[tuple[Scope, list[Record]]]) -> None:
        """Write one batch; deliver per-scope outcomes. A failed batch of many scopes is
        tried again scope by scope at once; a scope whose own write fails is set aside."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcomes = await self._apply(parts)
        except StoreError as exc:
            if len(parts) > 1:
                for part in parts:
                    if not part[0].closed:
                        await self._write([part])
                return
            self._failed(parts, loop.time(), str(exc), "transient")
            log.warning("cluster %s: write of %d records failed, retrying: %s",
                        parts[0][0].cluster, len(parts[0][1]), exc)
            self._set_aside(*parts[0])
            return
        except Exception as exc:
            self._failed(parts, loop.time(), f"{type(exc).__name__}: {exc}", "error")
            log.exception("unexpected store failure, retrying")
            for scope, records in parts:
                self._set_aside(scope, records)
            return
        elapsed = loop.time() - started
        for (scope, records), outcome in zip(parts, outcomes, strict=True):
            self._deliver(scope, records, outcome, elapsed)

    def _set_aside(self, scope: Scope, records: Sequence[Record]) -> None:
        """Take a failing scope out of the shards until its backoff has passed; its
        failed records wait with it, unless a newer version of the key came meanwhile."""
        if scope.closed:
            return
        scope.failures += 1
        retries = self.settings.apply_retries
        if retries and scope.failures > retries:
            log.error("cluster %s: giving up %d records after %d attempts; the next full"
                      " sync repairs them", scope.cluster, len(records), scope.failures)
            scope.failures = 0
            return
        for shard in self._shards:
            mine = [k for k, (s, _) in shard.pending.items() if s is scope]
            for k in mine:
                _hold(scope, shard.pending.pop(k)[1])
        for record in records:
            if _hold(scope, record):
                scope.queued += 1
                self._used += 1
        scope.retry_at = asyncio.get_running_loop().time() + scope.backoff.next()
        self._touched.add(scope)
        self._aside.add(scope)
        self._aside_changed.set()

    def _resume(self, scope: Scope) -> None:
        """A scope set aside may be tried again: its records go back to the shards."""
        scope.retry_at = None
        self._aside.discard(scope)
        held, scope.held = scope.held, {}
        for record in held.values():
            self._queue.add(self._shard_of(scope, record.key), (scope.sid, record.key),
                            (scope, record))

    async def _resume_loop(self) -> None:
        """Put scopes set aside back to work when their backoff has passed."""
        loop = asyncio.get_running_loop()
        while True:
            self._aside_changed.clear()
            now = loop.time()
            for scope in [s for s in self._aside if s.retry_at is not None
                          and s.retry_at <= now]:
                self._resume(scope)
            due = min((s.retry_at for s in self._aside if s.retry_at is not None),
                      default=None)
            try:
                async with asyncio.timeout(None if due is None else max(0.0, due - now)):
                    await self._aside_changed.wait()
            except TimeoutError:
                pass

    async def _apply(self, parts: list[tuple[Scope, list[Record]]]
                     ) -> Sequence[ApplyResult | BaseException]:
        if self._multi is not None and len(parts) > 1:
            return await self._multi.apply_groups(
                [WriteGroup(s.cluster, s.store, s.fence, r) for s, r in parts])
        out: list[ApplyResult | BaseException] = []
        for scope, records in parts:
            try:
                out.append(await scope.store.apply(scope.cluster, records, fence=scope.fence))
            except StoreError as exc:  # Fenced, or this scope's write failed: its outcome
                if len(parts) == 1 and not isinstance(exc, Fenced):
                    raise
                out.append(exc)
        return out

    def _failed(self, parts: list[tuple[Scope, list[Record]]], now: float, error: str,
                result: str) -> None:
        line = error.splitlines()[0] if error else "write failed"
        for scope, _ in parts:
            self.metrics.inc("batches_total", {**scope.labels, "result": result})
            since = scope.failing[0] if scope.failing is not None else now
            scope.failing = (since, line)

    def _deliver(self, scope: Scope, records: Sequence[Record],
                 outcome: ApplyResult | BaseException, elapsed: float) -> None:
        labels = scope.labels
        if isinstance(outcome, Fenced):
            self.metrics.inc("batches_total", {**labels, "result": "fenced"})
            self.metrics.inc("fenced_writes_total", labels)
            log.warning("cluster %s: %s", scope.cluster, outcome)
            self.remove(scope, outcome)
            return
        if isinstance(outcome, BaseException):
            self._failed([(scope, list(records))], asyncio.get_running_loop().time(),
                         str(outcome), "transient" if isinstance(outcome, StoreError)
                         else "error")
            log.warning("cluster %s: write of %d records failed, retrying: %s",
                        scope.cluster, len(records), outcome)
            self._set_aside(scope, records)
            return
        scope.failing = None
        scope.failures = 0
        scope.backoff.reset()
        scope.series("batch_duration_seconds").observe(elapsed)
        scope.series("batches_total", result="ok").inc()
        now = scope.clock()
        deletes = sum(1 for r in records if r.deleted)
        op = "delete" if deletes == len(records) else "upsert" if deletes == 0 else "mixed"
        if outcome.written:
            scope.series("writes_total", op=op, result="written").inc(outcome.written)
        if outcome.unchanged:
            scope.series("writes_total", op=op, result="unchanged").inc(outcome.unchanged)
        for key, error in outcome.rejected:
            scope.series("writes_total", op=op, result="rejected").inc()
            log.error("cluster %s: row %s rejected by the store: %s", scope.cluster, key, error)
        scope.written += outcome.written
        newest = max(r.query_at for r in records)
        scope.series("lag_seconds").set((now - newest).total_seconds())
        scope.lagging = True
        self._touched.add(scope)
        observe = scope.series("event_to_row_seconds").observe
        for r in records:
            observe((now - r.query_at).total_seconds())
