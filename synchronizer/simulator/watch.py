"""One open watch on a simulated cluster: a cursor into the event history.

Why a cursor and not a queue per watcher: every change is appended once to the cluster's
history (its resourceVersion is its position), and each watch just reads forward from its
own resourceVersion, keeping the events of its own resource (and namespace, or name). Slow
consumers therefore cost no memory, a resume "from version N" is the same code path as a
live watch, and a compaction that overtakes a watch is noticed
exactly as apiserver notices it: the watch gets an ERROR event with a 410 Status and ends.

The stream yields byte chunks (whole JSON lines, batched); the HTTP layer writes them. It
honours the cluster's fault switches: stall (send nothing, not even bookmarks, and ignore
timeoutSeconds, like a black-holed connection), per-event delay, raw line injection, and
abort (the HTTP layer closes the socket mid-stream).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .wire import SimError, bookmark_line, error_line, event_line, too_old

if TYPE_CHECKING:
    from .cluster import SimCluster
    from .resources import ResourceSpec

BATCH = 500
"""Events per write: large enough to amortise syscalls, small enough to interleave watches."""


def bookmark_tick(now: float, interval: float) -> float:
    """When a watch that is due a bookmark `interval` from `now` gets it: the tick after.

    Why ticks, as kube-apiserver does: its cacher files each watcher under the whole second
    its next bookmark is due (`watcherBookmarkTimeBuckets`) and a one-second ticker sends
    every due bucket at once, so the watches of a server bookmark together, not each on a
    phase of its own. The tick is the interval or one second, whichever is shorter (a test
    asking for bookmarks every 50 ms gets them), on the loop's clock shared by every stream.
    """
    tick = min(max(interval, 0.001), 1.0)
    return math.ceil((now + interval) / tick) * tick


class WatchStream:
    """The server side of one watch connection; create it with `SimCluster.open_watch`."""

    def __init__(
        self,
        cluster: SimCluster,
        *,
        cursor: int,
        namespace: str | None,
        bookmarks: bool,
        initial: list[bytes] | None = None,
        error: SimError | None = None,
        spec: ResourceSpec | None = None,
        key: str | None = None,
        initial_end: bool = False,
        match: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.cluster = cluster
        self.cursor = cursor
        """The resourceVersion up to which this stream has sent everything."""
        self.spec = spec or cluster.table("pods").spec
        self.resource = self.spec.id
        """The resource watched (its canonical id)."""
        self.namespace = namespace
        self.key = key
        """Only the object with this key (a watch of one object), or None."""
        self.bookmarks = bookmarks
        self.match = match
        """A label/field selector on the event's object, or None."""
        self._initial_end = initial_end
        self._initial = initial or []
        self._initial_pos = 0
        self._error = error
        self.wake = asyncio.Event()
        self.stopped = False
        self.aborted = False
        self.raw: deque[tuple[int, bytes]] = deque()
        """Injected lines, each to be written once the stream has reached its version."""
        self.on_abort: Callable[[bool], None] | None = None
        """Set by the HTTP layer: closes the connection (True: with a TCP reset)."""
        self.sent_events = 0
        self.end_at: int | None = None
        """Once everything up to this version is sent, end cleanly (the resource is gone)."""

    def abort(self, *, reset: bool = False) -> None:
        """Cut the connection abruptly (no terminating chunk), as a crashed server would."""
        self.stopped = self.aborted = True
        if self.on_abort is not None:
            self.on_abort(reset)
        self.wake.set()

    def close(self) -> None:
        """Deregister from the cluster; called by the HTTP layer however the stream ended."""
        self.stopped = True
        self.cluster.release_watch(self)

    def inject(self, line: bytes) -> None:
        """Queue a raw line to be written after every event already in the history."""
        self.raw.append((self.cluster.resource_version, line))
        self.wake.set()

    @property
    def pending_initial(self) -> int:
        """Synthetic ADDED events not yet sent (a watch from "" or "0" starts with them)."""
        return len(self._initial) - self._initial_pos

    def _prefix_ok(self, key: str) -> bool:
        if self.key is not None:
            return key == self.key
        return self.namespace is None or key.startswith(self.namespace + "/")

    @property
    def held(self) -> bool:
        """Whether a stall switch holds this stream (all streams, or its resource's)."""
        return self.cluster.stalled or self.resource in self.cluster.stalled_resources

    def _bookmark(self, *, initial_end: bool = False) -> bytes:
        return bookmark_line(self.cursor, self.spec.kind, self.spec.api_version,
                             initial_events_end=initial_end)

    async def chunks(self, *, timeout_seconds: float | None = None) -> AsyncIterator[bytes]:
        """Yield the stream's bytes until timeout, drop, compaction overtake or error."""
        cluster = self.cluster
        loop = asyncio.get_running_loop()
        deadline = None if timeout_seconds is None else loop.time() + timeout_seconds
        if self._error is not None:
            yield error_line(self._error)
            return
        next_bookmark = bookmark_tick(loop.time(), cluster.bookmark_interval)
        while not self.stopped:
            if self.held:
                self.wake.clear()
                await self.wake.wait()
                continue
            now = loop.time()
            if deadline is not None and now >= deadline:
                return  # timeoutSeconds ends even a busy stream, cleanly
            if self.pending_initial:
                batch = self._initial[self._initial_pos:self._initial_pos + BATCH]
                self._initial_pos += len(batch)
                self.sent_events += len(batch)
                yield b"".join(batch)
                continue
            if self._initial_end:
                self._initial_end = False
                yield self._bookmark(initial_end=True)
                continue
            if self.cursor < cluster.compacted:
                yield error_line(too_old(self.cursor, cluster.compacted + 1))
                return
            if self.raw and self.raw[0][0] <= self.cursor:
                lines = []
                while self.raw and self.raw[0][0] <= self.cursor:
                    lines.append(self.raw.popleft()[1])
                yield b"".join(lines)
                continue
            if self.end_at is not None and self.cursor >= self.end_at:
                return
            upto = cluster.resource_version
            if self.raw:
                upto = min(upto, self.raw[0][0])
            if self.cursor < upto:
                delay = cluster.event_delay
                upto = min(upto, self.cursor + (1 if delay > 0 else BATCH))
                parts = [event_line(kind, raw)
                         for kind, key, raw in cluster.history(self.cursor, upto,
                                                               self.resource)
                         if self._prefix_ok(key)
                         and (self.match is None or self.match(raw))]
                if delay > 0:
                    await asyncio.sleep(delay)
                self.cursor = upto
                if parts:
                    self.sent_events += len(parts)
                    yield b"".join(parts)
                cluster.progressed()
                continue
            if self.bookmarks and now >= next_bookmark:
                next_bookmark = bookmark_tick(now, cluster.bookmark_interval)
                yield self._bookmark()
                cluster.progressed()  # a test may wait for what a bookmark made happen
                continue
            wake_at = min(t for t in (deadline, next_bookmark if self.bookmarks else None,
                                      now + 3600.0) if t is not None)
            self.wake.clear()
            try:
                async with asyncio.timeout_at(wake_at):
                    await self.wake.wait()
            except TimeoutError:
                pass
