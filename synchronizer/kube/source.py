"""Pods of one cluster as a `reconciler.Source`: paged list, then a watch with bookmarks.

The engine needs two things of a cluster: a consistent snapshot (`list`) and every change
after it (`watch`). Both speak plain HTTP to the API server through httpx and parse JSON
with orjson into dicts that go straight into `project()`; the kubernetes client's model
classes cost ~100x more per Pod than the whole sync (DESIGN §4, §6).

Failure mapping, so the engine can recover without losing an event:
- HTTP 410 (a list's continue token or a watch's version is gone), or a watch ERROR event
  with code 410 → `Expired`: the engine relists from scratch and diffs. A list never mixes
  snapshots: a page with another resourceVersion than the first is also `Expired`.
- 429, 5xx, broken or refused connections → `SourceUnavailable`; a stalled stream →
  `Stalled` (a `SourceUnavailable`); with
  `retry_after` from the Retry-After header; 401/403 → `AccessDenied` (a subclass, so it
  is retried too, but reported for what it is).
- A line or object that cannot be used (bad JSON, unknown type, a Pod projection rejects)
  is skipped, logged in one line and counted; the stream carries on.
- The server ending the stream (its timeoutSeconds) returns normally: the engine watches
  again from the last version it saw (bookmarks included).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import orjson

from reconciler import (
    Bookmark,
    Event,
    Expired,
    Metrics,
    Page,
    Record,
    SourceUnavailable,
    Stalled,
)
from synchronizer.projection import BadObject, project, project_json

from .connection import ClusterEndpoint, KubeConfigError, client_kwargs, connect
from .errors import PODS, excerpt, http_error, transport_error

MAX_LINE = 16 * 1024 * 1024
"""Longest watch line kept (an etcd object is at most ~1.5 MB); longer ones are skipped."""
_CHANGE_TYPES = ("ADDED", "MODIFIED", "DELETED")
_ALL_TYPES = (*_CHANGE_TYPES, "BOOKMARK", "ERROR", "UNKNOWN")


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


class _PodList(msgspec.Struct):
    """A list page; items stay raw bytes for `project_json`."""

    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[msgspec.Raw] | None = None

    def __post_init__(self) -> None:
        if self.items is None:
            self.items = []


class _WatchEvent(msgspec.Struct):
    """A watch line; the object stays raw bytes until its type is known."""

    type: str = ""
    object: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


_PAGE = msgspec.json.Decoder(_PodList)
_EVENT = msgspec.json.Decoder(_WatchEvent)


def _loads_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError:
        return None


class KubePodSource:
    """`reconciler.Source` of one cluster's Pods over the Kubernetes HTTP API.

    `target` is a `ClusterEndpoint` (the source builds and owns its client), a server URL
    (plain HTTP, no credentials: the simulator, a kubectl proxy), or an
    `httpx.AsyncClient` whose base URL is the API server (owned by the caller).
    """

    def __init__(
        self,
        target: ClusterEndpoint | str | httpx.AsyncClient,
        *,
        cluster_id: str | None = None,
        biz_id: int,
        page_size: int = 500,
        watch_timeout: int = 300,
        inactivity: float | None = None,
        max_line: int = MAX_LINE,
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(target, str):
            target = ClusterEndpoint(id=cluster_id or target, server=target)
        if isinstance(target, ClusterEndpoint):
            self._endpoint: ClusterEndpoint | None = target
            self._client: httpx.AsyncClient | None = None
            cluster_id = cluster_id or target.id
        else:
            if cluster_id is None:
                raise TypeError("cluster_id is required when a client is given")
            self._endpoint = None
            self._client = target
        self._owns_client = self._endpoint is not None
        self._client_lock = asyncio.Lock()
        self.cluster_id: str = cluster_id
        self.biz_id = biz_id
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        # Real API servers send a bookmark about every minute and before ending a stream,
        # so silence a little longer than the stream's own lifetime means a dead stream.
        self.inactivity = float(inactivity if inactivity is not None else watch_timeout + 30)
        self.max_line = max_line
        self._clock = clock
        self._metrics = metrics
        self._log = logger or logging.getLogger(__name__)
        self._event_labels = {t: {"cluster": self.cluster_id, "type": t} for t in _ALL_TYPES}
        # Events are tallied here and added to the counter once per network chunk: a
        # labelled Prometheus increment costs a quarter of parsing a whole Pod.
        self._tally: dict[str, int] = dict.fromkeys(_ALL_TYPES, 0)

    def __repr__(self) -> str:
        return f"KubePodSource({self.cluster_id!r})"

    # -- plumbing ---------------------------------------------------------------------

    async def _http(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                assert self._endpoint is not None
                try:
                    creds = await connect(self._endpoint)
                except KubeConfigError as exc:
                    # Retried with backoff like any unreachable cluster: the file or the
                    # service account may appear or be fixed while we run.
                    raise SourceUnavailable(f"cluster {self.cluster_id}: {exc}") from None
                self._client = httpx.AsyncClient(**client_kwargs(creds))
            return self._client

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> KubePodSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _skip(self, reason: str, what: str) -> None:
        """Log one line (no traceback) and count an object or line we cannot use."""
        self._log.warning("cluster %s: skipped %s (%s)", self.cluster_id, what, reason)
        if self._metrics is not None:
            self._metrics.inc("skipped_objects_total", {"cluster": self.cluster_id,
                                                        "reason": reason})

    def _skip_object(self, obj: Any, exc: BadObject) -> None:
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict):
            ident = f"{meta.get('namespace')!r}/{meta.get('name')!r} uid={meta.get('uid')!r}"
        else:
            ident = excerpt(orjson.dumps(obj))
        self._skip("bad_object", f"pod {excerpt(ident)}: {exc}")

    def _count(self, type_: str) -> None:
        self._tally[type_] += 1

    def _flush_counts(self) -> None:
        """Add the tallied events to `events_total`."""
        tally = self._tally
        for type_, n in tally.items():
            if n:
                tally[type_] = 0
                if self._metrics is not None:
                    self._metrics.inc("events_total", self._event_labels[type_], n)

    # -- list ---------------------------------------------------------------------------

    async def _get_page(self, token: str | None) -> bytes:
        params = {"limit": str(self.page_size)}
        if token:
            params["continue"] = token
        client = await self._http()
        try:
            response = await client.get(PODS, params=params)
            body = await response.aread()
        except (httpx.HTTPError, KubeConfigError) as exc:
            raise transport_error(self.cluster_id, "list pods", exc) from None
        if response.status_code != 200:
            raise http_error(self.cluster_id, "list pods", response, body, now=self._clock)
        return body

    def _decode_page(self, body: bytes) -> tuple[dict[str, Any], list[Record], int]:
        """Parse and project one page: (list metadata, records, skipped items).

        Runs with the cyclic GC paused: a page of 500 Pods allocates ~10^5 containers at
        once, which triggers collections that rescan the whole (large, long-lived) heap,
        and JSON trees have no cycles to find. Measured with a 100k-record heap: 116 →
        68 µs per Pod. Nothing awaits inside, so no other coroutine runs meanwhile.
        """
        with _gc_paused():
            try:
                doc = _PAGE.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                raise SourceUnavailable(
                    f"cluster {self.cluster_id}: list pods: not a PodList: {excerpt(body)}"
                ) from None
            observed = self._clock()
            records: list[Record] = []
            skipped = 0
            for item in doc.items:
                try:
                    records.append(project_json(item, biz_id=self.biz_id, observed=observed))
                except BadObject as exc:
                    skipped += 1
                    self._skip_object(_loads_or_none(item), exc)
            meta: dict[str, Any] = {"resourceVersion": doc.metadata.resourceVersion}
            if doc.metadata.continue_:
                meta["continue"] = doc.metadata.continue_
            del doc  # free the page while the collector is still paused
        return meta, records, skipped

    async def list(self) -> AsyncIterator[Page]:
        """Yield the pages of one consistent list of every Pod, each with the list's version."""
        version: int | None = None
        token: str | None = None
        while True:
            meta, records, skipped = self._decode_page(await self._get_page(token))
            try:
                page_version = int(meta.get("resourceVersion"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise SourceUnavailable(
                    f"cluster {self.cluster_id}: list pods: bad resourceVersion"
                    f" {excerpt(str(meta.get('resourceVersion')))}"
                ) from None
            if version is None:
                version = page_version
            elif page_version != version:
                raise Expired(
                    f"cluster {self.cluster_id}: list pods: page at version {page_version}"
                    f" in a list at {version}"
                )
            yield Page(version, records, skipped)
            token = meta.get("continue") or None
            if not token:
                return

    # -- watch --------------------------------------------------------------------------

    def _event(self, line: bytes) -> Event | None:
        """Turn one watch line into an event; None when it is skipped. Raises on ERROR.

        Changes take the typed fast path (the object is projected from its raw bytes);
        bookmarks, errors and anything odd take the dict path below.
        """
        try:
            fast = _EVENT.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError):
            fast = None
        if fast is not None and fast.type in _CHANGE_TYPES:
            self._count(fast.type)
            try:
                return project_json(fast.object, biz_id=self.biz_id, observed=self._clock(),
                                    deleted=fast.type == "DELETED")
            except BadObject as exc:
                self._skip_object(_loads_or_none(fast.object), exc)
                return None
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            self._count("UNKNOWN")
            self._skip("bad_json", f"watch line {excerpt(line)}")
            return None
        type_ = doc.get("type")
        obj = doc.get("object")
        if type_ in _CHANGE_TYPES:
            self._count(type_)
            try:
                return project(
                    obj, biz_id=self.biz_id, observed=self._clock(), deleted=type_ == "DELETED"
                )
            except BadObject as exc:
                self._skip_object(obj, exc)
                return None
        if type_ == "BOOKMARK":
            self._count("BOOKMARK")
            try:
                return Bookmark(int(obj["metadata"]["resourceVersion"]))
            except (TypeError, KeyError, ValueError):
                self._skip("bad_bookmark", f"watch line {excerpt(line)}")
                return None
        if type_ == "ERROR":
            self._count("ERROR")
            status = obj if isinstance(obj, dict) else {}
            msg = (
                f"cluster {self.cluster_id}: watch ERROR {status.get('code')}"
                f" {status.get('reason')}: {excerpt(str(status.get('message', '')))}"
            )
            if status.get("code") == 410 or status.get("reason") in ("Expired", "Gone"):
                raise Expired(msg)
            raise SourceUnavailable(msg)
        self._count("UNKNOWN")
        self._skip("unknown_type", f"watch line {excerpt(line)}")
        return None

    async def watch(self, since: int) -> AsyncIterator[Event]:
        """Yield changes and bookmarks after `since`; return when the server ends the stream."""
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": str(since),
            "timeoutSeconds": str(self.watch_timeout),
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.inactivity
        client = await self._http()
        # No httpx read timeout: the inactivity bound below covers a silent stream.
        request = client.build_request(
            "GET", PODS, params=params, timeout=httpx.Timeout(30.0, read=None)
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(request, stream=True)
        except TimeoutError:
            raise Stalled(
                f"cluster {self.cluster_id}: watch stalled: no response in {self.inactivity:g} s"
            ) from None
        except (httpx.HTTPError, KubeConfigError) as exc:
            raise transport_error(self.cluster_id, "watch pods", exc) from None
        try:
            if response.status_code != 200:
                try:
                    body = await response.aread()
                except httpx.HTTPError:
                    body = b""
                raise http_error(
                    self.cluster_id, "watch pods", response, body, now=self._clock
                )
            chunks = aiter(response.aiter_bytes())
            pending: list[bytes] = []
            pending_size = 0
            oversized = False
            while True:
                self._flush_counts()
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise Stalled(
                        f"cluster {self.cluster_id}: watch stalled: no event or bookmark"
                        f" for {self.inactivity:g} s"
                    ) from None
                start = 0
                while True:
                    end = chunk.find(b"\n", start)
                    if end < 0:
                        rest = len(chunk) - start
                        if rest and not oversized:
                            pending.append(chunk[start:] if start else chunk)
                            pending_size += rest
                            if pending_size > self.max_line:
                                oversized = True
                                pending.clear()
                        break
                    if oversized:
                        oversized = False
                        pending_size = 0
                        self._skip("line_too_long", f"watch line over {self.max_line} bytes")
                        start = end + 1
                        continue
                    if pending:
                        pending.append(chunk[start:end])
                        line = b"".join(pending)
                        pending.clear()
                        pending_size = 0
                    else:
                        line = chunk[start:end]
                    start = end + 1
                    if not line or line.isspace():
                        continue
                    event = self._event(line)
                    if event is not None:
                        yield event
                    deadline = loop.time() + self.inactivity
            if oversized:
                self._skip("line_too_long", f"watch line over {self.max_line} bytes")
            elif pending:
                # The server closed mid-line: a whole event without its newline, or a torn one.
                line = b"".join(pending)
                if not line.isspace():
                    event = self._event(line)
                    if event is not None:
                        yield event
        except (httpx.HTTPError, KubeConfigError) as exc:
            raise transport_error(self.cluster_id, "watch pods", exc) from None
        finally:
            self._flush_counts()
            await response.aclose()

