"""One resource of one cluster as a `reconciler.Source`: paged list, then a watch.

The engine needs two things of a resource: a consistent snapshot (`list`) and every change
after it (`watch`). Both speak plain HTTP to the API server through the cluster's shared
client and hand each object's raw JSON bytes to the kind's projection; the kubernetes
client's model classes cost ~100x more per object than the whole sync (DESIGN §4, §6). The
resource is a parameter: the same code lists Pods, Nodes or CronJobs.

The watch is layered as kopf's is: `wire` sends the request and parses the answer as it
arrives, `lines` frames the byte stream, `events` turns a line into an engine event,
`feed` queues them for the reader (bookmarks held back), `stream` holds one watch open
under an inactivity bound, and the reconnecting loop is the engine's
(`ClusterReconciler._watch_loop`), which reopens from the last version seen.

Failure mapping, so the engine can recover without losing an event:
- HTTP 410 (a list's continue token or a watch's version is gone), or a watch ERROR event
  with code 410 → `Expired`: the engine relists from scratch and diffs. A list never mixes
  snapshots: a page with another resourceVersion than the first is also `Expired`.
- 401/403 → `AccessDenied`, 404 → `Absent` (both `Refused`: an error for this kind of
  this cluster alone, retried with backoff); 429, 5xx, broken or refused connections →
  `SourceUnavailable`; a stalled stream → `Stalled`; with `retry_after` from Retry-After.
- An object that cannot be used is skipped, logged in one line and counted; in a list its
  uid (when it has one) still goes into the page's `held` keys, so the full sync does not
  tombstone the row of an object that exists.
- The server ending the stream (its timeoutSeconds) returns normally.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import compress
from typing import Any, cast

import aiohttp
import msgspec

from reconciler import (
    Expired,
    Metrics,
    ObjectKey,
    Page,
    Record,
    SourceUnavailable,
    Unchanged,
)
from synchronizer.kinds import PODS, BadObject, Kind, Projection, Resource, uid_of

from .client import LIST_READ_AHEAD, READ_TIMEOUT, ClusterClient
from .connection import KubeConfigError
from .errors import excerpt, http_error, transport_error
from .events import EventDecoder
from .feed import BOOKMARK_EVERY
from .stream import WatchStream

MAX_LINE = 16 * 1024 * 1024
"""Longest watch line kept (an etcd object is at most ~1.5 MB); longer ones are skipped."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a synchronous burst of acyclic allocations."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class _List(msgspec.Struct):
    """A list page; items stay raw bytes for the projection."""

    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[msgspec.Raw] | None = None


class _HeadMeta(msgspec.Struct):
    uid: str = ""
    resourceVersion: str = ""


class _Head(msgspec.Struct):
    metadata: _HeadMeta | None = None


class _HeadList(msgspec.Struct):
    """A list page read for the `Unchanged` test: each item's uid and version only."""

    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[_Head] | None = None


_PAGE = msgspec.json.Decoder(_List)
_HEADS = msgspec.json.Decoder(_HeadList)


class KubeSource:
    """`reconciler.Source` of one resource of one cluster over the Kubernetes HTTP API."""

    def __init__(
        self,
        client: ClusterClient,
        *,
        biz_id: int,
        kind: Kind = PODS,
        resource: Resource | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        inactivity: float | None = None,
        max_line: int = MAX_LINE,
        bookmark_every: float = BOOKMARK_EVERY,
        decode_linger: float = 0.0,
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.cluster_id = client.cluster_id
        self.kind = kind
        self.resource = resource or kind.resources[0]
        self.biz_id = biz_id
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        # Real API servers send a bookmark about every minute and before ending a stream,
        # so silence a little longer than the stream's own lifetime means a dead stream.
        self.inactivity = float(inactivity if inactivity is not None else watch_timeout + 30)
        self.max_line = max_line
        self.bookmark_every = bookmark_every
        self.decode_linger = decode_linger
        self._clock = clock
        self._metrics = metrics
        self._log = logger or logging.getLogger(__name__)
        self._owns_client = owns_client
        self._labels = {"cluster": self.cluster_id, "kind": self.resource.plural}
        self._events = EventDecoder(
            cluster=self.cluster_id, kind=self.resource.plural, project=self._project,
            clock=clock, metrics=metrics, skip=self._skip,
        )

    def __repr__(self) -> str:
        return f"KubeSource({self.cluster_id!r}, {self.resource.plural!r})"

    async def aclose(self) -> None:
        """Close the cluster's client if this source was given it to own."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> KubeSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _project(self, raw: bytes, observed: datetime, deleted: bool) -> Record:
        return self.kind.project(raw, Projection(resource=self.resource, biz_id=self.biz_id,
                                                 observed=observed, deleted=deleted))

    def _skip(self, reason: str, what: str) -> None:
        """Log one line (no traceback) and count an object or line we cannot use."""
        self._log.warning("cluster %s: skipped %s (%s)", self.cluster_id, what, reason)
        if self._metrics is not None:
            self._metrics.inc("skipped_objects_total", {**self._labels, "reason": reason})

    # -- list ---------------------------------------------------------------------------

    async def _get_page(self, token: str | None) -> bytes:
        params = {"limit": str(self.page_size)}
        if token:
            params["continue"] = token
        what = f"list {self.resource.plural}"
        try:
            async with self.client.request(self.resource.path, params,
                                           read_timeout=READ_TIMEOUT,
                                           read_ahead=LIST_READ_AHEAD) as response:
                body = await response.read()
                status, reason, headers = response.status, response.reason, response.headers
        except TimeoutError:
            raise SourceUnavailable(f"cluster {self.cluster_id}: {what}: no answer within"
                                    f" {READ_TIMEOUT:g} s") from None
        except (aiohttp.ClientError, KubeConfigError) as exc:
            raise transport_error(self.cluster_id, what, exc) from None
        if status != 200:
            raise http_error(self.cluster_id, what, status, reason or "", headers, body,
                             now=self._clock)
        return body

    @staticmethod
    def _heads(body: bytes) -> tuple[_ListMeta, list[ObjectKey], list[int]] | None:
        """The page's metadata and each item's uid and version, read in one pass that
        allocates nothing else; None when the page cannot be read that way (the full path
        then says what is wrong with it). An item without a usable uid or version gets
        "" and -1, which no stored row matches."""
        try:
            heads = _HEADS.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        keys: list[str] = []
        versions: list[int] = []
        for head in heads.items or ():
            meta = head.metadata
            if meta is not None and meta.uid and meta.resourceVersion.isdigit():
                keys.append(meta.uid)
                versions.append(int(meta.resourceVersion))
            else:
                keys.append("")
                versions.append(-1)
        return heads.metadata, cast(list[ObjectKey], keys), versions

    async def _read_page(self, body: bytes, unchanged: Unchanged | None
                         ) -> tuple[str, str, list[Record], list[ObjectKey], int]:
        """One page: (version, continue, records, held keys, skipped).

        With `unchanged`, the page is first read for each item's uid and version only; the
        objects it vouches for are held, not projected, and the page is decoded in full
        only if some object is left: a no-change re-sync costs one scan of its bytes.
        """
        held: list[ObjectKey] = []
        todo: list[int] | None = None  # indices of the items to project; None: all
        heads = self._heads(body) if unchanged is not None else None
        if heads is not None and unchanged is not None:
            meta, keys, versions = heads
            vouched = await unchanged(keys, versions)
            if all(vouched):
                return meta.resourceVersion, meta.continue_, [], keys, 0
            todo = [n for n, yes in enumerate(vouched) if not yes]
            held = list(compress(keys, vouched))
        return self._decode_page(body, todo, held)

    def _decode_page(self, body: bytes, todo: list[int] | None, held: list[ObjectKey]
                     ) -> tuple[str, str, list[Record], list[ObjectKey], int]:
        """Parse one page and project its items (those at `todo`, or all); the keys of the
        objects that cannot be used are added to `held`.

        Runs with the cyclic GC paused: a page of 500 Pods allocates ~10^5 containers at
        once, which triggers collections that rescan the whole (large, long-lived) heap,
        and JSON trees have no cycles to find. Measured with a 100k-record heap: 116 →
        68 µs per Pod. Nothing awaits inside, so no other coroutine runs meanwhile.
        """
        with _gc_paused():
            doc = self._decode(_PAGE, body)
            items = doc.items or []
            observed = self._clock()
            records: list[Record] = []
            skipped = 0
            project = self._project
            for item in items if todo is None else (items[n] for n in todo):
                try:
                    records.append(project(item, observed, False))
                except BadObject as exc:
                    skipped += 1
                    uid = exc.uid or uid_of(item)
                    if uid:
                        held.append(ObjectKey(uid))
                    self._skip("bad_object", self._describe(item, exc))
            meta = doc.metadata
            del doc  # free the page while the collector is still paused
        return meta.resourceVersion, meta.continue_, records, held, skipped

    def _decode(self, decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
        try:
            return decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise SourceUnavailable(
                f"cluster {self.cluster_id}: list {self.resource.plural}: not a list:"
                f" {excerpt(body)}") from None

    def _describe(self, raw: bytes, exc: BadObject) -> str:
        ident = _ident(raw)
        return f"{self.resource.kind.lower()} {excerpt(ident)}: {exc}"

    async def list(self, unchanged: Unchanged | None = None) -> AsyncIterator[Page]:
        """Yield the pages of one consistent list, each with the list's version.

        The next page is asked for as soon as this one has arrived (its continue token
        peeked from the list metadata, which an API server writes before the items, and
        checked once the page is decoded), so the server prepares it while this one is
        decoded and written: at most one page ahead.
        """
        version: int | None = None
        fetch = asyncio.ensure_future(self._get_page(None))
        try:
            while True:
                body = await fetch
                guess = _peek_continue(body)
                if guess:  # ask for the next page before reading this one
                    fetch = asyncio.ensure_future(self._get_page(guess))
                rv, token, records, held, skipped = await self._read_page(body, unchanged)
                del body
                if token != guess:  # the peek was wrong (never, from a real API server)
                    await _discard(fetch)
                    if token:
                        fetch = asyncio.ensure_future(self._get_page(token))
                page = self._page(rv, version, records, held, skipped)
                version = page.version
                yield page
                if not token:
                    return
        finally:
            await _discard(fetch)

    def _page(self, rv: str, version: int | None, records: list[Record],
              held: list[ObjectKey], skipped: int) -> Page:
        """A page at `rv`, checked against the list's `version` (None: the first page)."""
        try:
            page_version = int(rv)
        except ValueError:
            raise SourceUnavailable(
                f"cluster {self.cluster_id}: list {self.resource.plural}: bad"
                f" resourceVersion {excerpt(rv)}") from None
        if version is not None and page_version != version:
            raise Expired(
                f"cluster {self.cluster_id}: list {self.resource.plural}: page at version"
                f" {page_version} in a list at {version}")
        return Page(page_version, records, skipped, tuple(held))

    # -- watch --------------------------------------------------------------------------

    def watch(self, since: int) -> WatchStream:
        """Changes and bookmarks after `since` (bookmarks handed over lazily: see
        `feed`); the iteration ends when the server ends the stream."""
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": str(since),
            "timeoutSeconds": str(self.watch_timeout),
        }
        return WatchStream(
            self.client, self.resource.path, params, since=since, decoder=self._events,
            cluster=self.cluster_id, what=f"watch {self.resource.plural}",
            inactivity=self.inactivity, max_line=self.max_line, now=self._clock,
            on_oversized=lambda: self._skip("line_too_long",
                                            f"watch line over {self.max_line} bytes"),
            bookmark_every=self.bookmark_every, decode_linger=self.decode_linger,
        )


_CONTINUE = b'"continue":"'
_ITEMS = b'"items":'


def _peek_continue(body: bytes) -> str:
    """The continue token of a list page, found in the list metadata before the items
    without decoding the page; "" if it is not there (the last page, or another order)."""
    items = body.find(_ITEMS)
    start = body.find(_CONTINUE, 0, items if items >= 0 else 4096)
    if start < 0:
        return ""
    start += len(_CONTINUE)
    end = body.find(b'"', start)
    return body[start:end].decode("ascii", "replace") if end > start else ""


async def _discard(fetch: asyncio.Future[bytes]) -> None:
    """Cancel a prefetch nobody needs; a failure of it is not reported."""
    if not fetch.done():
        fetch.cancel()
        await asyncio.wait([fetch])  # never raises: our own cancellation still does
    if not fetch.cancelled():
        fetch.exception()


def _ident(raw: bytes) -> str:
    """`namespace/name uid=...` of an object, for a log line, as far as it can be read."""
    try:
        meta = msgspec.json.decode(raw, type=dict[str, Any]).get("metadata")
    except (msgspec.ValidationError, msgspec.DecodeError):
        return excerpt(raw)
    if not isinstance(meta, dict):
        return excerpt(raw)
    return f"{meta.get('namespace')!r}/{meta.get('name')!r} uid={meta.get('uid')!r}"
