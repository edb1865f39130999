"""One simulated cluster: apiserver's list and watch semantics and its fault switches.

Why a layer over the store: the store (`RevisionStore`) is etcd: revisions, history,
snapshots. This class is what apiserver adds on top and what clients actually meet: list
parameters (limit, continue, resourceVersion, resourceVersionMatch) with their errors
(400, 410 Expired, 504 too large), watches that start from a revision or with synthetic
ADDED events, bookmarks, and the fault switches tests flip: drop or stall streams, delay
pages and events, script failures, inject raw lines, replay events, start a new
incarnation. It also offers waits for tests that resolve on events, never by polling.

Everything runs on one event loop; tests mutate a cluster directly while the HTTP server
in the same loop serves it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .faults import FailureRule, FailureScript, Target
from .snapshots import page, render
from .store import RevisionStore, utcnow
from .watch import WatchStream
from .wire import (
    CONTINUE_TOO_OLD,
    SimError,
    decode_continue,
    encode_continue,
    event_line,
    parse_rv,
    too_large,
    too_old,
)


class SimCluster(RevisionStore):
    """In-memory Pods of one cluster with apiserver's list/watch/version semantics."""

    def __init__(
        self,
        cluster_id: str = "default",
        *,
        bookmark_interval: float = 1.0,
        history_limit: int | None = 100_000,
        max_snapshots: int = 8,
        start_rv: int = 1,
        seed: int | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(history_limit=history_limit, max_snapshots=max_snapshots,
                         start_rv=start_rv, seed=seed, now=now)
        self.id = cluster_id
        self.bookmark_interval = bookmark_interval
        """Seconds between BOOKMARK events on an idle watch that asked for them."""
        self.page_delay = 0.0
        """Seconds each list page waits before it is answered (a slow server)."""
        self.event_delay = 0.0
        """Seconds before each watch event is written (a slow server; events go one by one)."""
        self.incarnation = str(uuid.uuid4())
        """The cluster's identity; it is the uid of the kube-system namespace."""
        self.failures = FailureScript()
        self.requests: Counter[str] = Counter()
        """Requests served per kind (list, watch, get, write, ...) for rate assertions."""
        self.stalled = False
        self._watchers: set[WatchStream] = set()
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def watchers(self) -> int:
        """Open watch streams."""
        return len(self._watchers)

    @property
    def streams(self) -> tuple[WatchStream, ...]:
        """The open watch streams (each with its `cursor` and `sent_events`), for tests."""
        return tuple(self._watchers)

    def _changed(self) -> None:
        for watcher in self._watchers:
            watcher.wake.set()
        self.progressed()

    # -- the API ------------------------------------------------------------------------------

    def list_body(
        self,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        namespace: str | None = None,
    ) -> bytes:
        """One page of a PodList, serialised, with apiserver's parameter semantics."""
        limit = limit if limit and limit > 0 else None
        if continue_token:
            if resource_version not in (None, ""):
                raise SimError(400, "specifying resource version is not allowed when using "
                               "continue")
            snap_rv, start = decode_continue(continue_token)
            if not self.retained(snap_rv):
                raise SimError(410, CONTINUE_TOO_OLD,
                               continue_token=encode_continue(self._rv, start))
            if snap_rv > self._rv:
                raise SimError(400, "continue key is not valid: revision from the future")
            snap = self.snapshot_at(snap_rv)
            raws, last, remaining = page(snap.order, snap.items.__getitem__, start=start,
                                         limit=limit, namespace=namespace)
            return self._render(snap.rv, raws, last, remaining)
        rv = parse_rv(resource_version)
        match = resource_version_match or ""
        if match and rv is None:
            raise SimError(400, "resourceVersionMatch is forbidden unless resourceVersion is "
                           "provided")
        if match not in ("", "Exact", "NotOlderThan"):
            raise SimError(400, f"unsupported resourceVersionMatch {match!r}")
        if match == "Exact" and rv == 0:
            raise SimError(400, 'resourceVersionMatch "Exact" is forbidden for '
                           'resourceVersion "0"')
        if rv is not None and rv > self._rv:
            raise too_large(rv, self._rv)
        exact = match == "Exact" or (match == "" and rv not in (None, 0) and limit is not None)
        target = rv if exact and rv is not None else self._rv
        if target < self._compacted:
            raise too_old(target, self._compacted + 1)
        if target != self._rv:
            snap = self.snapshot_at(target)
            raws, last, remaining = page(snap.order, snap.items.__getitem__, start=None,
                                         limit=limit, namespace=namespace)
            return self._render(target, raws, last, remaining)
        pods = self._pods
        raws, last, remaining = page(self._order, lambda k: pods[k][0], start=None,
                                     limit=limit, namespace=namespace)
        if remaining:
            self.snapshot_at(self._rv)  # freeze: the next pages come from this state
        return self._render(self._rv, raws, last, remaining)

    @staticmethod
    def _render(rv: int, raws: list[bytes], last: str | None, remaining: int) -> bytes:
        token = encode_continue(rv, last + "\x00") if last is not None else None
        return render(rv, raws, continue_token=token, remaining=remaining)

    def open_watch(
        self,
        *,
        resource_version: str | None = None,
        namespace: str | None = None,
        bookmarks: bool = False,
    ) -> WatchStream:
        """A watch: from "" or "0", synthetic ADDED for every Pod first; from N, the events after N.

        A version older than the retained history gives a stream that sends one ERROR event
        (410 Expired) and ends, as apiserver does; a version not reached yet is a 504.
        """
        rv = parse_rv(resource_version)
        if rv is not None and rv > self._rv:
            raise too_large(rv, self._rv)
        if rv is not None and rv != 0 and rv < self._compacted:
            return WatchStream(self, cursor=rv, namespace=namespace, bookmarks=bookmarks,
                               error=too_old(rv, self._compacted + 1))
        initial = None
        if not rv:
            prefix = None if namespace is None else namespace + "/"
            initial = [event_line("ADDED", self._pods[k][0]) for k in self._order
                       if prefix is None or k.startswith(prefix)]
        stream = WatchStream(self, cursor=rv or self._rv, namespace=namespace,
                             bookmarks=bookmarks, initial=initial)
        self._watchers.add(stream)
        self.progressed()
        return stream

    def release_watch(self, stream: WatchStream) -> None:
        """Forget a watch that ended (however it ended); wakes `wait_watchers` waiters."""
        if stream in self._watchers:
            self._watchers.discard(stream)
            self.progressed()

    # -- faults -------------------------------------------------------------------------------

    def drop_streams(self, *, reset: bool = False) -> int:
        """Close every open watch abruptly (mid-chunk; `reset`: TCP RST); returns how many."""
        streams = list(self._watchers)
        for stream in streams:
            stream.abort(reset=reset)
            self.release_watch(stream)
        return len(streams)

    def stall_streams(self, stalled: bool = True) -> None:
        """While stalled, open watches send nothing at all (no events, no bookmarks)."""
        self.stalled = stalled
        for watcher in self._watchers:
            watcher.wake.set()

    def fail_next(
        self,
        status: int,
        *,
        count: int | None = 1,
        retry_after: int | None = None,
        on: Target = "any",
        after_pages: int = 0,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next `count` matching requests (None: until `clear_failures`).

        `after_pages` matching requests are served normally first: `fail_next(410,
        on="list", after_pages=1)` expires the continue token of the second page.
        """
        self.failures.add(FailureRule(status=status, on=on, count=count, skip=after_pages,
                                      retry_after=retry_after, reason=reason, message=message))

    def clear_failures(self) -> None:
        """Drop every scripted failure still queued."""
        self.failures.clear()

    def inject_raw(self, line: bytes) -> int:
        """Write a raw line (bad JSON, unknown type, a huge object) into every open watch."""
        if not line.endswith(b"\n"):
            line += b"\n"
        for watcher in self._watchers:
            watcher.inject(line)
        return len(self._watchers)

    def replay(self, n: int) -> int:
        """Send the last `n` retained events again on every open watch (duplicate delivery)."""
        tail: list[tuple[str, str, bytes, bytes | None]] = []
        for event in reversed(self._log):
            if len(tail) >= n:
                break
            if event[0]:
                tail.insert(0, event)
        if not tail:
            return 0
        return self.inject_raw(b"".join(event_line(kind, raw) for kind, _, raw, _ in tail))

    def reset_incarnation(self, *, start_rv: int = 1) -> None:
        """Become a rebuilt cluster: new incarnation, revisions restart low, history gone.

        The Pods survive (as after an etcd restore) but are re-stamped with the new, lower
        revisions; open watches are dropped.
        """
        self.drop_streams()
        self.incarnation = str(uuid.uuid4())
        self._restamp(start_rv)
        self.progressed()

    # -- waiting (for tests) --------------------------------------------------------------------

    def progressed(self) -> None:
        """Wake every `wait_until` so it re-checks its predicate (called on each change)."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; re-checked on every change, watch open/close or
        write (no polling). Wrap in `asyncio.timeout` to bound it."""
        loop = asyncio.get_running_loop()
        while not predicate():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            await fut

    async def wait_watchers(self, n: int = 1) -> None:
        """Return once at least `n` watches are open."""
        await self.wait_until(lambda: len(self._watchers) >= n)

    async def wait_delivered(self, rv: int | None = None) -> None:
        """Return once every open watch has sent all events up to `rv` (default: latest)."""
        target = self._rv if rv is None else rv
        await self.wait_until(lambda: all(w.cursor >= target and not w.pending_initial
                                          for w in self._watchers))

    def stats(self) -> dict[str, Any]:
        """Counters for the admin API and progress displays."""
        return {
            "id": self.id, "incarnation": self.incarnation, "resourceVersion": self._rv,
            "compacted": self._compacted, "pods": len(self._pods), "history": len(self._log),
            "watchers": len(self._watchers), "stalled": self.stalled,
            "requests": dict(self.requests), "failures_pending": self.failures.pending,
            "failures_injected": self.failures.injected,
        }
