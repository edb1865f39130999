"""One simulated cluster: apiserver's list and watch semantics and its fault switches.

Why a layer over the store: the store (`RevisionStore`) is etcd: revisions, history,
snapshots. This class is what apiserver adds on top and what clients actually meet: list
parameters (limit, continue, resourceVersion, resourceVersionMatch) with their errors
(400, 410 Expired, 504 too large), watches that start from a revision or with synthetic
ADDED events, bookmarks, and the fault switches tests flip: drop or stall streams, delay
pages and events, script failures, inject raw lines, replay events, deny a resource (403,
or 404 as if its API were absent), start a new incarnation. Every switch that concerns
streams or requests takes an optional `resource` to act on one kind only. It also offers
waits for tests that resolve on events, never by polling.

Every method is about one resource, named by any of its names (`pods`, `nodes`,
`deployments`, `deployments.apps`, `syncclusters`, ...); Pods are the default, so the
Pod-only API of the first version reads as before.

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
from .resources import Registry, ResourceSpec
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

DENY_STATUSES = (403, 404)
"""What `deny` can make a resource answer: forbidden, or absent."""


def _select(order: list[str], lookup: Callable[[str], bytes],
            match: Callable[[bytes], bool] | None) -> list[str]:
    """The keys whose objects a selector matches (all of them without a selector)."""
    return order if match is None else [k for k in order if match(lookup(k))]


class SimCluster(RevisionStore):
    """In-memory objects of one cluster with apiserver's list/watch/version semantics."""

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
        resources: Registry | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(history_limit=history_limit, max_snapshots=max_snapshots,
                         start_rv=start_rv, seed=seed, now=now, resources=resources)
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
        self.resource_requests: Counter[tuple[str, str]] = Counter()
        """Requests per (resource id, list/watch/get/write)."""
        self.token = token
        """When set, API requests need `Authorization: Bearer <token>` (else 401)."""
        self.denied: dict[str, int] = {}
        """Resource id -> the status (403 or 404) it answers until `allow`."""
        self.stalled = False
        self.stalled_resources: set[str] = set()
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
        resource: str = "pods",
        match: Callable[[bytes], bool] | None = None,
    ) -> bytes:
        """One page of a list (`PodList`, ...), serialised, with apiserver's semantics."""
        table = self.table(resource)
        spec = table.spec
        limit = limit if limit and limit > 0 else None
        if continue_token:
            if resource_version not in (None, ""):
                raise SimError(400, "specifying resource version is not allowed when using "
                               "continue")
            snap_rv, start = decode_continue(continue_token)
            if not self.retained(snap_rv, spec.id):
                raise SimError(410, CONTINUE_TOO_OLD,
                               continue_token=encode_continue(self._rv, start))
            if snap_rv > self._rv:
                raise SimError(400, "continue key is not valid: revision from the future")
            snap = self.snapshot_at(snap_rv, spec.id)
            raws, last, remaining = page(_select(snap.order, snap.items.__getitem__, match),
                                         snap.items.__getitem__, start=start, limit=limit,
                                         namespace=namespace)
            return self._render(snap.rv, raws, last, remaining, spec)
        rv = parse_rv(resource_version)
        rv_match = resource_version_match or ""
        if rv_match and rv is None:
            raise SimError(400, "resourceVersionMatch is forbidden unless resourceVersion is "
                           "provided")
        if rv_match not in ("", "Exact", "NotOlderThan"):
            raise SimError(400, f"unsupported resourceVersionMatch {rv_match!r}")
        if rv_match == "Exact" and rv == 0:
            raise SimError(400, 'resourceVersionMatch "Exact" is forbidden for '
                           'resourceVersion "0"')
        if rv is not None and rv > self._rv:
            raise too_large(rv, self._rv)
        exact = rv_match == "Exact" or (rv_match == "" and rv not in (None, 0)
                                        and limit is not None)
        target = rv if exact and rv is not None else self._rv
        if target < self._compacted:
            raise too_old(target, self._compacted + 1)
        if target != self._rv:
            snap = self.snapshot_at(target, spec.id)
            raws, last, remaining = page(_select(snap.order, snap.items.__getitem__, match),
                                         snap.items.__getitem__, start=None, limit=limit,
                                         namespace=namespace)
            return self._render(target, raws, last, remaining, spec)
        items = table.items

        def lookup(k: str) -> bytes:
            return items[k][0]

        raws, last, remaining = page(_select(table.order, lookup, match), lookup, start=None,
                                     limit=limit, namespace=namespace)
        if remaining:
            self.snapshot_at(self._rv, spec.id)  # freeze: the next pages come from this state
        return self._render(self._rv, raws, last, remaining, spec)

    @staticmethod
    def _render(rv: int, raws: list[bytes], last: str | None, remaining: int,
                spec: ResourceSpec) -> bytes:
        token = encode_continue(rv, last + "\x00") if last is not None else None
        return render(rv, raws, continue_token=token, remaining=remaining,
                      list_kind=spec.list_kind, api_version=spec.api_version)

    def open_watch(
        self,
        *,
        resource_version: str | None = None,
        namespace: str | None = None,
        bookmarks: bool = False,
        resource: str = "pods",
        name: str | None = None,
        send_initial_events: bool = False,
        match: Callable[[bytes], bool] | None = None,
    ) -> WatchStream:
        """A watch: from "" or "0", synthetic ADDED for every object first; from N, the
        events after N. `name` watches one object; `send_initial_events` (the watch-list
        protocol) sends the synthetic ADDED events from any version, then a BOOKMARK that
        marks their end.

        A version older than the retained history gives a stream that sends one ERROR event
        (410 Expired) and ends, as apiserver does; a version not reached yet is a 504.
        """
        table = self.table(resource)
        key = None if name is None else table.key(namespace, name)
        namespace = namespace if table.spec.namespaced else None
        rv = parse_rv(resource_version)
        if rv is not None and rv > self._rv:
            raise too_large(rv, self._rv)
        if send_initial_events and not bookmarks:
            raise SimError(400, "sendInitialEvents requires allowWatchBookmarks=true")
        if rv is not None and rv != 0 and rv < self._compacted and not send_initial_events:
            return WatchStream(self, cursor=rv, namespace=namespace, bookmarks=bookmarks,
                               error=too_old(rv, self._compacted + 1), spec=table.spec,
                               key=key, match=match)
        initial = None
        if not rv or send_initial_events:
            keys = [key] if key is not None and key in table.items else (
                [] if key is not None else table.in_namespace(namespace) if namespace
                else table.order)
            initial = [event_line("ADDED", table.items[k][0]) for k in keys
                       if match is None or match(table.items[k][0])]
            rv = 0
        stream = WatchStream(self, cursor=rv or self._rv, namespace=namespace,
                             bookmarks=bookmarks, initial=initial, spec=table.spec, key=key,
                             initial_end=send_initial_events, match=match)
        self._watchers.add(stream)
        self.progressed()
        return stream

    def release_watch(self, stream: WatchStream) -> None:
        """Forget a watch that ended (however it ended); wakes `wait_watchers` waiters."""
        if stream in self._watchers:
            self._watchers.discard(stream)
            self.progressed()

    # -- faults -------------------------------------------------------------------------------

    def _resource_id(self, resource: str | None) -> str | None:
        return None if resource is None else self.table(resource).spec.id

    def drop_streams(self, *, reset: bool = False, resource: str | None = None) -> int:
        """Close every open watch (of `resource`) abruptly (mid-chunk; `reset`: TCP RST);
        returns how many."""
        rid = self._resource_id(resource)
        streams = [w for w in self._watchers if rid is None or w.resource == rid]
        for stream in streams:
            stream.abort(reset=reset)
            self.release_watch(stream)
        return len(streams)

    def end_streams(self, *, resource: str) -> int:
        """End every open watch of `resource` cleanly once it has sent what happened so far
        (its resource stopped being served); returns how many."""
        rid = self._resource_id(resource)
        streams = [w for w in self._watchers if w.resource == rid]
        for stream in streams:
            stream.end_at = self._rv
            stream.wake.set()
        return len(streams)

    def stall_streams(self, stalled: bool = True, *, resource: str | None = None) -> None:
        """While stalled, open watches (of `resource`) send nothing at all (no events, no
        bookmarks)."""
        rid = self._resource_id(resource)
        if rid is None:
            self.stalled = stalled
        elif stalled:
            self.stalled_resources.add(rid)
        else:
            self.stalled_resources.discard(rid)
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
        resource: str | None = None,
    ) -> None:
        """Fail the next `count` matching requests (None: until `clear_failures`).

        `after_pages` matching requests are served normally first: `fail_next(410,
        on="list", after_pages=1)` expires the continue token of the second page.
        `resource` limits the rule to one resource's requests.
        """
        self.failures.add(FailureRule(status=status, on=on, count=count, skip=after_pages,
                                      retry_after=retry_after, reason=reason, message=message,
                                      resource=self._resource_id(resource)))

    def clear_failures(self) -> None:
        """Drop every scripted failure still queued."""
        self.failures.clear()

    def inject_raw(self, line: bytes, *, resource: str | None = None) -> int:
        """Write a raw line (bad JSON, unknown type, a huge object) into every open watch
        (of `resource`); returns how many streams got it."""
        if not line.endswith(b"\n"):
            line += b"\n"
        rid = self._resource_id(resource)
        streams = [w for w in self._watchers if rid is None or w.resource == rid]
        for watcher in streams:
            watcher.inject(line)
        return len(streams)

    def replay(self, n: int, *, resource: str | None = None) -> int:
        """Send the last `n` retained events of each open watch's resource again on that
        watch (duplicate delivery); `resource` limits it to one resource's watches."""
        rid = self._resource_id(resource)
        touched = 0
        for watched in {w.resource for w in self._watchers if rid is None or w.resource == rid}:
            tail: list[bytes] = []
            for kind, res, _, raw, _ in reversed(self._log):
                if len(tail) >= n:
                    break
                if kind and res == watched:
                    tail.insert(0, event_line(kind, raw))
            if tail:
                touched += self.inject_raw(b"".join(tail), resource=watched)
        return touched

    def deny(self, resource: str, status: int = 403, *, drop_streams: bool = True) -> None:
        """Make every request for `resource` answer `status` until `allow`: 403 Forbidden
        (RBAC without the permission) or 404 (the API is absent: discovery omits it too).

        Open watches of it are cut (`drop_streams`), so a client meets the denial at once
        instead of when its stream would next end.
        """
        if status not in DENY_STATUSES:
            raise ValueError(f"deny takes 403 or 404, not {status}")
        rid = self.table(resource).spec.id
        self.denied[rid] = status
        if drop_streams:
            self.drop_streams(resource=rid)

    def allow(self, resource: str | None = None) -> None:
        """Lift the denial of `resource` (None: of every resource)."""
        if resource is None:
            self.denied.clear()
        else:
            self.denied.pop(self.table(resource).spec.id, None)

    def hidden(self) -> frozenset[str]:
        """The resources that answer 404: left out of discovery."""
        return frozenset(r for r, status in self.denied.items() if status == 404)

    def reset_incarnation(self, *, start_rv: int = 1) -> None:
        """Become a rebuilt cluster: new incarnation, revisions restart low, history gone.

        The Pods survive (as after an etcd restore) but are re-stamped with the new, lower
        revisions; open watches are dropped.
        """
        self.drop_streams()
        self.incarnation = str(uuid.uuid4())
        self._restamp(start_rv, kube_system_uid=self.incarnation)
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
            "compacted": self._compacted, "pods": len(self), "history": len(self._log),
            "watchers": len(self._watchers), "stalled": self.stalled,
            "requests": dict(self.requests), "failures_pending": self.failures.pending,
            "failures_injected": self.failures.injected,
            "kinds": self.counts(), "denied": dict(self.denied),
            "stalled_resources": sorted(self.stalled_resources),
            "watchers_by_resource": dict(Counter(w.resource for w in self._watchers)),
            "requests_by_resource": {f"{r}:{op}": n
                                     for (r, op), n in self.resource_requests.items()},
        }
