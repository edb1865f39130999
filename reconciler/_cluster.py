"""`ClusterReconciler`: keeps one kind of one cluster true in a store.

Structure, inside one `TaskGroup`: a full-sync loop (on start, every
`full_sync_interval` with jitter, after a 410 on the watch, after a gate overflow) and a
watch loop. Events pass the gate (parked during a full sync), then go to the writer, in
this reconciler's *scope*: the writer is shared by every cluster and kind of an instance
(`_writer.py`), or private to this reconciler when none is given. Leases are not its
business: the `ClusterSupervisor` takes the cluster's lease once for all of a cluster's
kinds and runs their reconcilers under it, and the fence it was given only travels with
each write. An instance may share a semaphore that bounds how many full syncs run at once,
so hundreds of clusters started together do not all list and write at the same moment.

A full sync that finds the list's version below the newest stored version knows the
cluster was rebuilt or its etcd restored: every listed version would be refused as stale.
It raises the alarm (an error line, `version_resets_total`), resets the versions of the
cluster's rows to 0 under the fence, and writes every listed object afresh (tombstoning
the rest as usual); from then on the rows follow the new incarnation's versions.

A full sync after the first successful one of a run lets the source skip objects whose
stored row is at exactly the listed version with an intact checksum (`Unchanged`): this
run has already projected or verified every such row with the same projection, so only
the bytes need reading. The first full sync of a run vouches for nothing, because rows at
an equal version may have been written by an older release or under another business id.

The watch starts from a list's version as soon as that list is complete, not when its
writes are done: on a cold database the writes of a big first sync can outlast the API
server's watch window, and a watch opened only then would meet a 410 and force a second
full sync. Its events are parked by the gate until the full sync's writes are through.
After a 410 the watch waits for a list that *started* after the 410 (a full sync already
under way may list at a version that is gone too), so one 410 costs one relist.

`stop()` is graceful and bounded: producers stop first, then the scope gets
`stop_timeout` to flush. No cleanup path waits on a part that is already dead: when the
scope is closed (fenced, or the writer stopped), its producers are released and a full
sync that was feeding it abandons its parked events instead of replaying them into
nothing. Failures of the source or store are retried with jittered backoff inside; only
`Fenced` (another owner holds the cluster) ends `run()` with an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import eq

from ._backoff import Backoff
from ._diff import changes, tombstones
from ._errors import (
    Expired,
    Fenced,
    QueueClosed,
    Refused,
    SourceError,
    SourceUnavailable,
    Stalled,
    StoreError,
)
from ._gate import Gate
from ._metrics import NullMetrics
from ._protocols import Metrics, Source, Store
from ._settings import ReconcilerSettings
from ._status import Phase, ReconcilerStatus
from ._types import Bookmark, ClusterId, Fence, ObjectKey, Record, StoredIndex
from ._writer import Scope, Writer, WriterSettings

PERIOD_JITTER = 0.2
"""Each periodic full sync waits `full_sync_interval` times a factor in 1 ± this, so
clusters started together drift apart instead of relisting in lockstep."""

log = logging.getLogger("reconciler")


def leaves(group: BaseExceptionGroup) -> list[BaseException]:  # type: ignore[type-arg]
    """The non-group exceptions inside possibly nested exception groups, in order."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def utcnow() -> datetime:
    """The default wall clock: aware UTC."""
    return datetime.now(UTC)


class ClusterReconciler:
    """Runs full syncs and a watch for one kind of one cluster; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: ClusterId,
        source: Source,
        store: Store,
        kind: str = "",
        settings: ReconcilerSettings | None = None,
        metrics: Metrics | None = None,
        fence: Fence | None = None,
        clock: Callable[[], datetime] = utcnow,
        writer: Writer | None = None,
        full_sync_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.cluster = cluster
        self.kind = kind
        self.settings = settings or ReconcilerSettings()
        self.status = ReconcilerStatus(cluster=cluster, kind=kind)
        self._source = source
        self._store = store
        self._fence = fence
        self._metrics: Metrics = metrics or NullMetrics()
        self._clock = clock
        self._labels = {"cluster": cluster, "kind": kind}
        self._own_writer = writer is None
        self._writer = writer or Writer(metrics=self._metrics, settings=WriterSettings(
            senders=self.settings.senders, batch_size=self.settings.batch_size,
            linger=self.settings.linger,
            budget=self.settings.gate_capacity
            + self.settings.shard_capacity * self.settings.senders,
            backoff_initial=self.settings.backoff_initial,
            backoff_max=self.settings.backoff_max, apply_retries=self.settings.apply_retries))
        self._slots = full_sync_slots
        self._scope: Scope | None = None
        self._gate = Gate(capacity=self.settings.gate_capacity, dispatch=self._put,
                          enabled=self.settings.gate_enabled, admit=self._may_park,
                          count=self._count_parked)
        self._stop = asyncio.Event()
        self._resync = asyncio.Event()
        self._resync_reason = "periodic"
        self._synced = asyncio.Condition()
        self._generation = 0
        self._lists_started = 0
        self._listed = asyncio.Condition()
        self._last_list: tuple[int, int] | None = None  # (start index, version)
        self._seen_version = 0
        self._progress = asyncio.Event()
        self._wanted = 0  # the highest version a `received()` caller waits for
        self._prompt: Callable[[int], None] | None = None  # the open stream's, if it has one
        self._error_logged: str | None = None
        self._verified = False  # a full sync of this run has checked every row

    # -- public surface -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to finish gracefully (producers, then a bounded flush)."""
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
        """Records waiting in the writer right now."""
        return self._scope.depth if self._scope is not None else 0

    @property
    def written(self) -> int:
        """Rows this reconciler's current run has written (a change counter for readers
        that cache something derived from the table, such as row counts)."""
        return self._scope.written if self._scope is not None else 0

    @property
    def write_failure(self) -> tuple[float, str] | None:
        """(loop time since when, last error) while the store keeps refusing writes."""
        return self._scope.failing if self._scope is not None else None

    @property
    def scope(self) -> Scope:
        """This reconciler's share of the writer (while it runs)."""
        if self._scope is None:
            raise RuntimeError(f"{self._name} is not running")
        return self._scope

    async def _put(self, record: Record) -> None:
        await self.scope.put(record)

    def _may_park(self) -> bool:
        return self._scope is None or self._scope.may_park()

    def _count_parked(self, n: int) -> None:
        if self._scope is not None:
            self._scope.set_parked(n)

    async def wait_synced(self, generation: int = 0) -> int:
        """Wait until more than `generation` full syncs have completed; return the count."""
        async with self._synced:
            await self._synced.wait_for(lambda: self._generation > generation)
            return self._generation

    async def received(self, version: int) -> None:
        """Wait until the watch (or a list) has passed `version`; it may not be written yet.

        A stream may hold bookmarks back (see `Source.watch`); it is prompted to hand over
        what it holds, since a bookmark may be the only thing that reaches `version`.
        """
        while self._seen_version < version:
            self._progress.clear()
            if version > self._wanted:
                self._wanted = version
            if self._prompt is not None:
                self._prompt(version)
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
        await self.scope.drained()

    async def run(self) -> None:
        """Reconcile until `stop()` or cancellation; raise `Fenced` if ownership is lost."""
        self._metrics.set("reconciler_up", self._labels, 1)
        self._verified = False
        scope = self._scope = self._writer.scope(
            cluster=self.cluster, store=self._store, fence=self._fence, labels=self._labels,
            clock=self._clock)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = (tg.create_task(self._writer.run(), name=f"writer:{self._name}")
                          if self._own_writer else None)
                fenced = tg.create_task(self._fenced(scope))
                producers = [
                    tg.create_task(self._full_sync_loop(), name=f"full-sync:{self._name}"),
                    tg.create_task(self._watch_loop(), name=f"watch:{self._name}"),
                ]
                await self._stop.wait()
                self.status.phase = Phase.STOPPING
                for task in producers:
                    task.cancel()
                await asyncio.wait(producers)
                try:
                    async with asyncio.timeout(self.settings.stop_timeout):
                        await scope.drained()
                except TimeoutError:
                    log.warning("%s: stopped with %d records unflushed; the next full sync"
                                " repairs them", self._name, scope.depth)
                except QueueClosed:
                    pass
                fenced.cancel()
                if writer is not None:
                    writer.cancel()
        except BaseExceptionGroup as group:
            # task groups nest (the writer has its own): look at the leaves
            found = leaves(group)
            fenced_errors = [e for e in found if isinstance(e, Fenced)]
            self.status.phase = Phase.FENCED if fenced_errors else Phase.FAILED
            first = (fenced_errors or found)[0]
            self.status.last_error = str(first)
            raise first from None
        finally:
            scope.close()
            self._metrics.set("reconciler_up", self._labels, 0)
            if self.status.phase not in (Phase.FENCED, Phase.FAILED):
                self.status.phase = Phase.STOPPED

    @staticmethod
    async def _fenced(scope: Scope) -> None:
        """End the run with `Fenced` once the writer finds this scope's cluster taken."""
        raise await scope.fenced

    @property
    def _name(self) -> str:
        return f"cluster {self.cluster}" + (f" {self.kind}" if self.kind else "")

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
                self._failed("full sync", exc)
                if isinstance(exc, SourceUnavailable):
                    retry_after = exc.retry_after
            except Exception as exc:
                self._metrics.inc("full_syncs_total",
                                  {**self._labels, "trigger": trigger, "result": "error"})
                log.exception("%s: full sync failed unexpectedly", self._name)
                self.status.last_error = f"full sync: {exc!r}"
            else:
                backoff.reset()
                trigger = await self._next_trigger()
                continue
            self.status.phase = Phase.REFUSED if self.status.refused else Phase.BACKOFF
            trigger = "retry"
            await backoff.sleep(floor=retry_after)

    async def _next_trigger(self) -> str:
        if self._resync.is_set():
            self._resync.clear()
            return self._resync_reason
        wait = self.settings.full_sync_interval * random.uniform(1 - PERIOD_JITTER,
                                                                 1 + PERIOD_JITTER)
        try:
            async with asyncio.timeout(wait):
                await self._resync.wait()
        except TimeoutError:
            return "periodic"
        self._resync.clear()
        return self._resync_reason

    async def _full_sync(self, trigger: str) -> None:
        slots = self._slots
        if slots is None:
            await self._full_sync_now(trigger, lambda: None)
            return
        self.status.phase = Phase.SYNCING
        await slots.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        try:
            await self._full_sync_now(trigger, give_back)
        finally:
            give_back()

    async def _full_sync_now(self, trigger: str, give_back: Callable[[], None]) -> None:
        """One full sync; `give_back()` the slot once the list, the diff and the tombstones
        are done and only the writes are left to wait for: the slot bounds what a full sync
        holds (its stored index, its seen set, the API server's attention), not the
        commits, which the writer's budget bounds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        scope = self.scope
        self.status.phase = Phase.SYNCING
        labels = self._labels
        await self._gate.close()
        self._lists_started += 1
        index = self._lists_started
        list_version: int | None = None
        listed = upserts = deletes = 0
        try:
            await scope.drained()
            # Nothing else writes this view now (the gate is closed, the scope drained, the
            # lease is ours), so the index may load while the list's first page is fetched.
            loaded = _Index(self._store, self.cluster)
            try:
                while True:
                    seen: set[ObjectKey] = set()
                    backwards: int | None = None
                    pages = self._source.list(loaded.vouch if self._verified else None)
                    try:
                        async for page in pages:
                            stored = await loaded.get()
                            if list_version is None and page.version < stored.newest:
                                backwards = page.version
                                break
                            list_version = page.version
                            seen.update(page.held)
                            for record in changes(page.records, stored, seen):
                                upserts += 1
                                await scope.put(record)
                    finally:
                        close = getattr(pages, "aclose", None)
                        if close is not None:
                            await close()
                    if backwards is None:
                        break
                    await self._reset_versions(backwards, stored.newest)
                    loaded = _Index(self._store, self.cluster)
                stored = await loaded.get()
            finally:
                loaded.cancel()
            if list_version is None:
                raise SourceUnavailable("the list returned no page")
            listed = len(seen)
            await self._announce_list(index, list_version)
            for record in tombstones(stored, seen, version=list_version, now=self._clock()):
                deletes += 1
                await scope.put(record)
            del stored, seen
            give_back()
            await scope.drained()
        except (SourceError, StoreError):
            # The senders still run: replay what was parked (all of it: no complete list
            # covers it), so the watch's news is not held back until the retry.
            if await self._gate.open(None):
                self.request_full_sync("overflow")
            raise
        except BaseException:
            # Cancelled, or the senders are gone: replaying would wait on dead parts.
            self._gate.abandon()
            raise
        if await self._gate.open(list_version):
            self._metrics.inc("gate_overflows_total", labels)
            log.warning("%s: parked events overflowed (capacity %d); syncing again",
                        self._name, self.settings.gate_capacity)
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
        self._verified = True
        self._recovered()
        log.info("%s: full sync (%s) done in %.2fs at version %d: %d listed, %d upserts,"
                 " %d deletes", self._name, trigger, duration, list_version, listed,
                 upserts, deletes)
        async with self._synced:
            self._generation += 1
            self._synced.notify_all()
        self._mark_progress(list_version)

    async def _reset_versions(self, listed: int, newest: int) -> None:
        """The cluster's versions went backwards: alert, then reset the rows' versions
        (fenced) so that the list about to be written in full is not refused as stale."""
        log.error("%s: versions went backwards (the list is at version %d, stored rows reach"
                  " %d): the cluster was rebuilt or its etcd restored; resetting its rows'"
                  " versions and rewriting every row from a new list", self._name, listed,
                  newest)
        self._metrics.inc("version_resets_total", self._labels)
        self.status.version_resets += 1
        self._seen_version = 0  # progress is counted in the new incarnation's versions
        self._wanted = 0
        self.scope.forget_versions()
        rows = await self._store.reset_versions(self.cluster, fence=self._fence)
        log.warning("%s: versions of %d rows reset to 0", self._name, rows)

    async def _announce_list(self, index: int, version: int) -> None:
        """A list is complete: the watch may start (or restart) from its version."""
        async with self._listed:
            self._last_list = (index, version)
            self._listed.notify_all()

    async def _wait_listed(self, after: int) -> int:
        """The version of the first complete list that started after `after` lists."""
        async with self._listed:
            await self._listed.wait_for(
                lambda: self._last_list is not None and self._last_list[0] > after)
            assert self._last_list is not None
            return self._last_list[1]

    # -- watch ----------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        version = await self._wait_listed(0)
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        status = self.status
        while True:
            received = False
            failing = self._error_logged is not None and self._error_logged.startswith("watch")
            try:
                stream = self._source.watch(version)
                self._prompt = getattr(stream, "prompt", None)
                if self._prompt is not None and self._wanted > version:
                    self._prompt(self._wanted)
                try:
                    async for event in stream:
                        if failing:
                            failing = False
                            self._recovered()
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
                    self._prompt = None
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
                reason = "closed"
            except Expired:
                self._metrics.inc("watch_restarts_total", {**self._labels, "reason": "expired"})
                log.info("%s: watch from version %d expired; relisting", self._name, version)
                started = self._lists_started
                self.request_full_sync("expired")
                version = await self._wait_listed(started)
                backoff.reset()
                continue
            except SourceUnavailable as exc:
                reason = "stalled" if isinstance(exc, Stalled) else "error"
                self._metrics.inc("watch_restarts_total", {**self._labels, "reason": reason})
                self._failed("watch", exc)
                await backoff.sleep(floor=exc.retry_after)
                continue
            self._metrics.inc("watch_restarts_total", {**self._labels, "reason": reason})
            if received:
                backoff.reset()
            else:
                await backoff.sleep()

    # -- bookkeeping ----------------------------------------------------------------------

    def _mark_progress(self, version: int) -> None:
        if version > self._seen_version:
            self._seen_version = version
            self.status.resume_version = version
        self._progress.set()

    def _failed(self, what: str, exc: BaseException) -> None:
        """Record an error: status, a metric, and one log line per distinct message.

        A refused kind (403, or an API the cluster lacks) is retried with backoff for as
        long as it lasts; repeating the same warning every retry would bury everything
        else in the log, so a repeat is logged at debug level until the message changes
        or the kind recovers.
        """
        message = f"{what}: {exc}"
        refused = isinstance(exc, Refused)
        self.status.last_error = message
        self.status.refused = refused
        reason = "refused" if refused else "error"
        self._metrics.inc("sync_errors_total", {**self._labels, "reason": reason})
        self._metrics.set("sync_healthy", self._labels, 0)
        if message != self._error_logged:
            self._error_logged = message
            log.warning("%s: %s", self._name, message)
        else:
            log.debug("%s: %s", self._name, message)

    def _recovered(self) -> None:
        self._metrics.set("sync_healthy", self._labels, 1)
        if self._error_logged is not None:
            log.info("%s: recovered (last error: %s)", self._name, self._error_logged)
            self._error_logged = None
        self.status.refused = False


class _Index:
    """A full sync's stored index, loading in the background from construction; also the
    `Unchanged` test over it: an active row, at that very version, whose columns still
    match its checksum (`StoredIndex.intact`)."""

    def __init__(self, store: Store, cluster: ClusterId) -> None:
        self._task = asyncio.ensure_future(store.load_index(cluster))
        self._stored: StoredIndex | None = None

    async def get(self) -> StoredIndex:
        """The index, once loaded (raises what loading raised)."""
        if self._stored is None:
            self._stored = await self._task
        return self._stored

    async def vouch(self, keys: Sequence[ObjectKey], versions: Sequence[int]) -> list[bool]:
        """`Unchanged` (see the class docstring): one lookup per listed object, in C."""
        return list(map(eq, map((await self.get()).intact.get, keys), versions))

    def cancel(self) -> None:
        """Stop loading if still loading; a failure nobody awaited is not reported."""
        if not self._task.done():
            self._task.cancel()
        elif not self._task.cancelled():
            self._task.exception()
