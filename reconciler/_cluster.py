"""`ClusterReconciler`: keeps one cluster's rows in a store true to its source.

Structure, inside one `TaskGroup`: a full-sync loop (on start, every
`full_sync_interval`, after a 410 on the watch, after a gate overflow), a watch loop
(from the first list's version; resumes from the last version seen, bookmarks included),
the sender pool, a lease keeper and a status tick. Events pass the gate (parked during a
full sync), then the shards. `stop()` is graceful: producers stop first, then senders
flush what is queued, then the lease is released so a successor need not wait for expiry.
Failures of the source or store are retried with jittered backoff inside; only `Fenced`
(another owner holds the cluster) ends `run()` with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ._backoff import Backoff
from ._diff import changes, tombstones
from ._errors import Expired, Fenced, SourceError, SourceUnavailable, Stalled, StoreError
from ._gate import Gate
from ._protocols import Leases, Metrics, Source, Store
from ._sender import SenderPool
from ._settings import ReconcilerSettings
from ._status import Phase, ReconcilerStatus
from ._types import Bookmark, ClusterId, Fence, ObjectKey

log = logging.getLogger("reconciler")


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:  # type: ignore[type-arg]
    """The non-group exceptions inside possibly nested exception groups, in order."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def utcnow() -> datetime:
    """The default wall clock: aware UTC."""
    return datetime.now(UTC)


class NullMetrics:
    """Metrics that go nowhere, for embedding the engine without a metrics backend."""

    def inc(self, name: str, labels: object, n: float = 1) -> None:
        pass

    def observe(self, name: str, labels: object, value: float) -> None:
        pass

    def set(self, name: str, labels: object, value: float) -> None:
        pass


class ClusterReconciler:
    """Runs full syncs and a watch for one cluster; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: ClusterId,
        source: Source,
        store: Store,
        settings: ReconcilerSettings | None = None,
        metrics: Metrics | None = None,
        leases: Leases | None = None,
        fence: Fence | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.cluster = cluster
        self.settings = settings or ReconcilerSettings()
        self.status = ReconcilerStatus(cluster=cluster)
        self._source = source
        self._store = store
        self._metrics: Metrics = metrics or NullMetrics()
        self._leases = leases
        self._fence = fence if leases is not None else None
        self._clock = clock
        self._labels = {"cluster": cluster}
        self._pool = SenderPool(
            cluster=cluster, store=store, fence=self._fence, settings=self.settings,
            metrics=self._metrics, clock=clock,
        )
        self._gate = Gate(capacity=self.settings.gate_capacity, dispatch=self._pool.put,
                          enabled=self.settings.gate_enabled)
        self._stop = asyncio.Event()
        self._resync = asyncio.Event()
        self._resync_reason = "periodic"
        self._synced = asyncio.Condition()
        self._generation = 0
        self._list_version = 0
        self._seen_version = 0
        self._progress = asyncio.Event()

    # -- public surface -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to finish gracefully (producers, then a flush, then the lease)."""
        self._stop.set()

    def request_full_sync(self, reason: str = "manual") -> None:
        """Schedule a full sync as soon as the current one (if any) ends."""
        self._resync_reason = reason
        self._resync.set()

    @property
    def parked(self) -> int:
        """Events parked by the gate right now."""
        return self._gate.parked

    @property
    def queued(self) -> int:
        """Records waiting in the sender queues right now."""
        return self._pool.depth

    async def wait_synced(self, generation: int = 0) -> int:
        """Wait until more than `generation` full syncs have completed; return the count."""
        async with self._synced:
            await self._synced.wait_for(lambda: self._generation > generation)
            return self._generation

    async def received(self, version: int) -> None:
        """Wait until the watch (or a list) has passed `version`; it may not be written yet."""
        while self._seen_version < version:
            self._progress.clear()
            await self._progress.wait()

    async def caught_up(self, version: int) -> None:
        """Wait until the watch has passed `version` and everything received is written.

        For tests and tools that must know the store reflects a source version: it awaits
        progress events, never polls.
        """
        await self.received(version)
        while not self._gate.is_open:
            self._progress.clear()
            await self._progress.wait()
        await self._pool.drained()

    async def run(self) -> None:
        """Reconcile until `stop()` or cancellation; raise `Fenced` if ownership is lost."""
        self._metrics.set("reconciler_up", self._labels, 1)
        try:
            if not await self._acquire_lease():
                return  # stopped while waiting for the lease
            async with asyncio.TaskGroup() as tg:
                senders = tg.create_task(self._pool.run(), name=f"senders:{self.cluster}")
                helpers = [tg.create_task(self._tick())]
                if self._leases is not None:
                    helpers.append(tg.create_task(self._keep_lease()))
                producers = [
                    tg.create_task(self._full_sync_loop(), name=f"full-sync:{self.cluster}"),
                    tg.create_task(self._watch_loop(), name=f"watch:{self.cluster}"),
                ]
                await self._stop.wait()
                self.status.phase = Phase.STOPPING
                for task in producers:
                    task.cancel()
                await asyncio.wait(producers)
                try:
                    async with asyncio.timeout(self.settings.stop_timeout):
                        await self._pool.drained()
                except TimeoutError:
                    log.warning("cluster %s: stopped with %d records unflushed; the next full"
                                " sync repairs them", self.cluster, self._pool.depth)
                senders.cancel()
                for task in helpers:
                    task.cancel()
        except BaseExceptionGroup as group:
            # task groups nest (the sender pool has its own): look at the leaves
            leaves = list(_leaves(group))
            fenced = [e for e in leaves if isinstance(e, Fenced)]
            self.status.phase = Phase.FENCED if fenced else Phase.FAILED
            first = (fenced or leaves)[0]
            self.status.last_error = str(first)
            raise first from None
        finally:
            self._metrics.set("reconciler_up", self._labels, 0)
            await self._release_lease()
            if self.status.phase not in (Phase.FENCED, Phase.FAILED):
                self.status.phase = Phase.STOPPED

    # -- lease ----------------------------------------------------------------------------

    async def _acquire_lease(self) -> bool:
        """Take the lease, waiting while another owner holds it; False if stopped first."""
        if self._leases is None or self._fence is None:
            return True
        backoff = Backoff(self.settings.backoff_initial, min(self.settings.backoff_max,
                                                              self.settings.lease_ttl / 3))
        while not self._stop.is_set():
            try:
                if await self._leases.acquire(self.cluster, self._fence, self.settings.lease_ttl):
                    self._metrics.inc("lease_acquisitions_total",
                                      {**self._labels, "result": "acquired"})
                    return True
                result = "busy"
                self.status.phase = Phase.WAITING_LEASE
            except StoreError as exc:
                result = "error"
                self._note_error(f"lease: {exc}")
            self._metrics.inc("lease_acquisitions_total", {**self._labels, "result": result})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next()):
                    await self._stop.wait()
        return False

    async def _keep_lease(self) -> None:
        assert self._leases is not None and self._fence is not None
        while True:
            await asyncio.sleep(self.settings.lease_ttl / 3)
            try:
                held = await self._leases.acquire(self.cluster, self._fence,
                                                  self.settings.lease_ttl)
            except StoreError as exc:
                self._note_error(f"lease renewal: {exc}")
                continue
            if not held:
                raise Fenced(f"cluster {self.cluster}: lease taken over by another owner")

    async def _release_lease(self) -> None:
        if self._leases is None or self._fence is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await asyncio.shield(self._leases.release(self.cluster, self._fence))

    # -- full sync ------------------------------------------------------------------------

    async def _full_sync_loop(self) -> None:
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        trigger = "start"
        while True:
            retry_after: float | None = None
            try:
                await self._full_sync(trigger)
            except Fenced:
                raise
            except (SourceError, StoreError) as exc:
                self._metrics.inc("full_syncs_total",
                                  {**self._labels, "trigger": trigger, "result": "error"})
                self._note_error(f"full sync: {exc}")
                if isinstance(exc, SourceUnavailable):
                    retry_after = exc.retry_after
            except Exception as exc:
                self._metrics.inc("full_syncs_total",
                                  {**self._labels, "trigger": trigger, "result": "error"})
                log.exception("cluster %s: full sync failed unexpectedly", self.cluster)
                self.status.last_error = f"full sync: {exc!r}"
            else:
                backoff.reset()
                trigger = await self._next_trigger()
                continue
            self.status.phase = Phase.BACKOFF
            trigger = "retry"
            await backoff.sleep(floor=retry_after)

    async def _next_trigger(self) -> str:
        if self._resync.is_set():
            self._resync.clear()
            return self._resync_reason
        try:
            async with asyncio.timeout(self.settings.full_sync_interval):
                await self._resync.wait()
        except TimeoutError:
            return "periodic"
        self._resync.clear()
        return self._resync_reason

    async def _full_sync(self, trigger: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.status.phase = Phase.SYNCING
        labels = self._labels
        await self._gate.close()
        list_version: int | None = None
        complete = False
        try:
            await self._pool.drained()
            index = await self._store.load_index(self.cluster)
            seen: set[ObjectKey] = set()
            upserts = deletes = 0
            async for page in self._source.list():
                list_version = page.version
                for record in changes(page.records, index, seen):
                    upserts += 1
                    await self._pool.put(record)
            if list_version is None:
                raise SourceUnavailable("the list returned no page")
            for record in tombstones(index, seen, version=list_version, now=self._clock()):
                deletes += 1
                await self._pool.put(record)
            await self._pool.drained()
            complete = True
        finally:
            overflowed = await self._gate.open(list_version if complete else None)
            if overflowed:
                self._metrics.inc("gate_overflows_total", labels)
                log.warning("cluster %s: parked events overflowed (capacity %d); syncing again",
                            self.cluster, self.settings.gate_capacity)
                self.request_full_sync("overflow")
        duration = loop.time() - started
        self._metrics.observe("full_sync_duration_seconds", labels, duration)
        self._metrics.inc("full_syncs_total", {**labels, "trigger": trigger, "result": "ok"})
        self._metrics.inc("full_sync_changes_total", {**labels, "op": "upsert"}, upserts)
        self._metrics.inc("full_sync_changes_total", {**labels, "op": "delete"}, deletes)
        now = self._clock()
        self._metrics.set("last_full_sync_timestamp_seconds", labels, now.timestamp())
        self.status.last_full_sync = now
        self.status.last_full_sync_seconds = duration
        self.status.full_syncs += 1
        self.status.phase = Phase.WATCHING
        log.info("cluster %s: full sync (%s) done in %.2fs at version %d: %d listed, %d upserts,"
                 " %d deletes", self.cluster, trigger, duration, list_version, len(seen),
                 upserts, deletes)
        async with self._synced:
            self._list_version = list_version
            self._generation += 1
            self._synced.notify_all()
        self._mark_progress(list_version)

    # -- watch ----------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        generation = await self.wait_synced(0)
        version = self._list_version
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        status = self.status
        while True:
            received = False
            try:
                stream = self._source.watch(version)
                try:
                    async for event in stream:
                        received = True
                        if event.version > version:
                            version = event.version
                        if isinstance(event, Bookmark):
                            self._mark_progress(version)
                            continue
                        status.events += 1
                        status.rate.add(loop.time())
                        await self._gate.put(event)
                        self._mark_progress(version)
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
                reason = "closed"
            except Expired:
                self._metrics.inc("watch_restarts_total", {**self._labels, "reason": "expired"})
                log.info("cluster %s: watch from version %d expired; relisting", self.cluster,
                         version)
                self.request_full_sync("expired")
                generation = await self.wait_synced(generation)
                version = self._list_version
                backoff.reset()
                continue
            except SourceUnavailable as exc:
                reason = "stalled" if isinstance(exc, Stalled) else "error"
                self._metrics.inc("watch_restarts_total", {**self._labels, "reason": reason})
                self._note_error(f"watch: {exc}")
                await backoff.sleep(floor=exc.retry_after)
                continue
            self._metrics.inc("watch_restarts_total", {**self._labels, "reason": reason})
            if received:
                backoff.reset()
            else:
                await backoff.sleep()

    # -- bookkeeping ----------------------------------------------------------------------

    async def _tick(self) -> None:
        """Refresh gauges once a second; lag reads 0 while nothing waits to be written."""
        labels = self._labels
        while True:
            parked, queued = self._gate.parked, self._pool.depth
            self._metrics.set("parked_events", labels, parked)
            self._metrics.set("sender_queue_depth", labels, queued)
            if parked == 0 and queued == 0 and self._gate.is_open:
                self._metrics.set("lag_seconds", labels, 0)
            await asyncio.sleep(1)

    def _mark_progress(self, version: int) -> None:
        if version > self._seen_version:
            self._seen_version = version
            self.status.resume_version = version
        self._progress.set()

    def _note_error(self, message: str) -> None:
        self.status.last_error = message
        log.warning("cluster %s: %s", self.cluster, message)
