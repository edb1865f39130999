"""The sender pool: N coroutines, each draining one shard into the store in batches.

A sender waits for records, lingers briefly so a burst becomes one batch (bounded by
`batch_size` and `linger`), and writes the batch in one transaction. A transient store
failure is retried with jittered backoff while newer versions keep coalescing behind it;
`Fenced` ends the pool (this instance no longer owns the cluster); rows the store refuses
(`ApplyResult.rejected`) are counted and logged once each, never retried forever.
When the senders end, for whatever reason, every shard is closed: producers blocked on a
full shard, and anyone waiting for the pool to drain, are released with `QueueClosed`
instead of waiting for senders that no longer exist.

Versions only go forward: the pool remembers the highest version it has taken of each key
and drops a record older than that (`superseded_total`). The pipeline already delivers a
key's versions in order (one watch per resource, one shard per key, the gate replaying
only events newer than the list), so this guard is the local, checkable form of that
argument; it is what lets the store skip writes of a newer version with unchanged content
(status-only noise) without an older, different version being able to overtake it later
(TEST-MATRIX row 15, docs/designs/006-no-version-only-writes.md). A delete forgets its
key: the store's tombstone guards it from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from ._backoff import Backoff
from ._errors import Fenced, QueueClosed, StoreError
from ._protocols import Metrics, Store
from ._settings import ReconcilerSettings
from ._shards import ShardQueue, shard_of
from ._types import ApplyResult, ClusterId, Fence, ObjectKey, Record

log = logging.getLogger("reconciler.sender")


class SenderPool:
    """Routes records to shards and runs one sender per shard."""

    def __init__(
        self,
        *,
        cluster: ClusterId,
        store: Store,
        fence: Fence | None,
        settings: ReconcilerSettings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._cluster = cluster
        self._store = store
        self._fence = fence
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._labels = dict(labels) if labels is not None else {"cluster": cluster}
        self._queues = [ShardQueue(settings.shard_capacity) for _ in range(settings.senders)]
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._taken: dict[ObjectKey, int] = {}
        self.failing: tuple[float, str] | None = None
        """(loop time of the first failure, last error) while writes keep failing; None
        once one succeeds. What /readyz reports: a CMDB that answers but refuses writes
        (read-only, disk full) is as unusable as one that does not answer."""
        self.superseded = 0
        self.written = 0
        self.newest_query_at: datetime | None = None

    @property
    def depth(self) -> int:
        """Keys waiting in all shards (not counting batches being written)."""
        return sum(len(q) for q in self._queues)

    async def put(self, record: Record) -> None:
        """Queue a record on its key's shard; waits while that shard is full.

        Raises `QueueClosed` once the senders have ended.
        """
        if self._closed:
            raise QueueClosed("the senders have ended")
        key = record.key
        if record.version < self._taken.get(key, 0):
            self.superseded += 1
            self._metrics.inc("superseded_total", self._labels)
            return
        if record.deleted:
            self._taken.pop(key, None)
        else:
            self._taken[key] = record.version
        self._idle.clear()
        await self._queues[shard_of(record.key, len(self._queues))].put(record)

    async def drained(self) -> None:
        """Return once every queued record has been written (or refused).

        Raises `QueueClosed` if the senders ended with records still queued.
        """
        await self._idle.wait()
        if self._closed and self.depth:
            raise QueueClosed(f"the senders ended with {self.depth} records unwritten")

    async def run(self) -> None:
        """Run the senders until cancelled; raise `Fenced` when the lease is lost."""
        try:
            async with asyncio.TaskGroup() as tg:
                for queue in self._queues:
                    tg.create_task(self._send(queue))
        finally:
            self._closed = True
            for queue in self._queues:
                queue.close()
            self._idle.set()

    def _update_idle(self) -> None:
        if self._inflight == 0 and all(len(q) == 0 for q in self._queues):
            self._idle.set()

    async def _send(self, queue: ShardQueue) -> None:
        settings = self._settings
        while True:
            await queue.wait()
            if len(queue) < settings.batch_size and settings.linger > 0:
                await asyncio.sleep(settings.linger)
            batch = queue.take(settings.batch_size)
            self._inflight += 1
            try:
                await self._apply(batch)
            finally:
                self._inflight -= 1
                self._update_idle()
            self._metrics.set("sender_queue_depth", self._labels, self.depth)

    async def _apply(self, batch: Sequence[Record]) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._settings.backoff_initial, self._settings.backoff_max)
        attempts = 0
        while True:
            started = loop.time()
            try:
                result = await self._store.apply(self._cluster, batch, fence=self._fence)
            except Fenced:
                self._metrics.inc("batches_total", {**self._labels, "result": "fenced"})
                self._metrics.inc("fenced_writes_total", self._labels)
                raise
            except StoreError as exc:
                self._metrics.inc("batches_total", {**self._labels, "result": "transient"})
                log.warning("cluster %s: write of %d records failed, retrying: %s",
                            self._cluster, len(batch), exc)
                self._note_failure(loop.time(), str(exc))
            except Exception as exc:
                self._metrics.inc("batches_total", {**self._labels, "result": "error"})
                log.exception("cluster %s: unexpected store failure, retrying", self._cluster)
                self._note_failure(loop.time(), f"{type(exc).__name__}: {exc}")
            else:
                self.failing = None
                self._metrics.observe("batch_duration_seconds", self._labels,
                                      loop.time() - started)
                self._metrics.inc("batches_total", {**self._labels, "result": "ok"})
                self._committed(batch, result)
                return
            attempts += 1
            if self._settings.apply_retries and attempts > self._settings.apply_retries:
                log.error("cluster %s: giving up a batch of %d after %d attempts; the next full"
                          " sync repairs it", self._cluster, len(batch), attempts)
                return
            await backoff.sleep()

    def _note_failure(self, now: float, error: str) -> None:
        since = self.failing[0] if self.failing is not None else now
        self.failing = (since, error.splitlines()[0] if error else "write failed")

    def _committed(self, batch: Sequence[Record], result: ApplyResult) -> None:
        now = self._clock()
        labels = self._labels
        deletes = sum(1 for r in batch if r.deleted)
        op = "delete" if deletes == len(batch) else "upsert" if deletes == 0 else "mixed"
        if result.written:
            self._metrics.inc("writes_total", {**labels, "op": op, "result": "written"},
                              result.written)
        if result.unchanged:
            self._metrics.inc("writes_total", {**labels, "op": op, "result": "unchanged"},
                              result.unchanged)
        for key, error in result.rejected:
            self._metrics.inc("writes_total", {**labels, "op": op, "result": "rejected"})
            log.error("cluster %s: row %s rejected by the store: %s", self._cluster, key, error)
        self.written += result.written
        newest = max(r.query_at for r in batch)
        if self.newest_query_at is None or newest > self.newest_query_at:
            self.newest_query_at = newest
        self._metrics.set("lag_seconds", labels, (now - newest).total_seconds())
        for r in batch:
            self._metrics.observe("event_to_row_seconds", labels,
                                  (now - r.query_at).total_seconds())
