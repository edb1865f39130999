"""One watch stream as the engine reads it: events out, bounded by silence.

The stream layer of the watch (kopf's `watch_objs`): it opens one watch request, maps a
refused or failed answer onto the engine's errors, and hands out the events its
`feed.WatchFeed` decoded, until the server ends the stream. The request goes through
`wire.WatchProtocol` (httptools, parsed in `data_received`: a bookmark wakes no task),
or, for a cluster reached through an HTTP proxy, through the cluster's aiohttp session,
whose chunks the reader then feeds in itself (design 010).

`WatchStream` is an async iterator with two more methods the engine uses: `aclose()`, and
`prompt(version)`, which makes the feed hand over a held bookmark at once (see `feed`).

Silence is bounded: a stream that delivers nothing at all — no event, no bookmark — for
`inactivity` seconds is dead even if its TCP connection looks alive (a proxy that stopped
forwarding, a half-open socket), and ends with `Stalled`, so the reconnecting loop above
reopens it. The bound is a watchdog that looks a few times per `inactivity` whether bytes
arrived or events were taken since; events waiting for a slow reader are not silence.
Not a socket read timeout: that one replaces a loop timer at every chunk, and with a
fleet's thousands of watches bookmarking each second the timers were a fifth of the
instance's idle CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from datetime import datetime
from typing import NoReturn

import aiohttp

from reconciler import Event, Stalled

from .batch import DecodeBatch
from .client import ClusterClient
from .connection import Credentials, KubeConfigError
from .errors import http_error, transport_error
from .events import EventDecoder
from .feed import BOOKMARK_EVERY, WatchFeed
from .lines import LineFramer
from .wire import Target, WatchProtocol, open_watch


class WatchStream:
    """The events of one watch request (see the module docstring)."""

    def __init__(
        self,
        client: ClusterClient,
        path: str,
        params: Mapping[str, str],
        *,
        since: int,
        decoder: EventDecoder,
        cluster: str,
        what: str,
        inactivity: float,
        max_line: int,
        on_oversized: Callable[[], None],
        now: Callable[[], datetime],
        bookmark_every: float = BOOKMARK_EVERY,
        decode_linger: float = 0.0,
    ) -> None:
        self._client = client
        self._path = path
        self._params = params
        self._since = since
        self._decoder = decoder
        self._cluster = cluster
        self._what = what
        self._inactivity = inactivity
        self._max_line = max_line
        self._on_oversized = on_oversized
        self._now = now
        self._bookmark_every = bookmark_every
        self._decode_linger = decode_linger
        self._feed: WatchFeed | None = None
        self._protocol: WatchProtocol | None = None
        self._exits: AsyncExitStack | None = None
        self._watchdog: _Watchdog | None = None
        self._wanted = 0
        self._closed = False

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> Event:
        feed = self._feed
        if feed is None:
            if self._closed:
                raise StopAsyncIteration
            feed = await self._open()
        try:
            return await feed.next()
        except StopAsyncIteration:
            await self.aclose()
            if self._stalled():
                raise self._stall() from None
            raise
        except BaseException as exc:
            await self._close_failed(exc)

    def prompt(self, version: int) -> None:
        """Someone waits for `version`: hand over a held bookmark at once."""
        self._wanted = max(self._wanted, version)
        if self._protocol is not None:
            self._protocol.prompt(version)
        elif self._feed is not None:
            self._feed.prompt(version)

    async def aclose(self) -> None:
        """Drop the connection; further reads end the iteration."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._protocol is not None:
            self._protocol.close()
        if self._exits is not None:
            exits, self._exits = self._exits, None
            await exits.aclose()

    # -- opening ----------------------------------------------------------------------

    def _stall(self) -> Stalled:
        return Stalled(f"cluster {self._cluster}: watch stalled: no event or bookmark for"
                       f" {self._inactivity:g} s")

    def _stalled(self) -> bool:
        return self._watchdog is not None and self._watchdog.fired

    def _failure(self, exc: BaseException) -> Exception | None:
        """The engine error for a failed exchange (wire.ProtocolError is an OSError; a
        TimeoutError is aiohttp's read timeout or our connect or answer bound); None for
        anything else, which is raised as it is."""
        if not isinstance(exc, OSError | aiohttp.ClientError | KubeConfigError):
            return None
        if isinstance(exc, TimeoutError) or self._stalled():
            return self._stall()
        return transport_error(self._cluster, self._what, exc)

    async def _close_failed(self, exc: BaseException) -> NoReturn:
        """Close after a failed open or read, then raise the engine's error for `exc`
        (or `exc` itself when it is no failed exchange: a cancellation, a bug)."""
        await self.aclose()
        failure = self._failure(exc)
        if failure is None:
            raise exc
        raise failure from None

    def _new_feed(self, *, batched: bool = False) -> WatchFeed:
        """A feed; `batched`, its change lines are decoded by the loop's `DecodeBatch`
        (the direct transport's: aiohttp's reader feeds and reads in one task)."""
        linger = self._decode_linger if batched else 0.0
        feed = WatchFeed(
            self._since,
            framer=LineFramer(max_line=self._max_line, on_oversized=self._on_oversized),
            decoder=self._decoder, clock=asyncio.get_running_loop().time,
            bookmark_every=self._bookmark_every,
            batch=DecodeBatch.of(linger) if linger > 0 else None)
        if self._wanted:
            feed.prompt(self._wanted)
        return feed

    async def _open(self) -> WatchFeed:
        """Send the request; the feed of its 200 answer. Raises the engine's errors."""
        creds = await self._client.credentials()
        try:
            if creds.proxy:
                feed = await self._open_through_aiohttp()
            else:
                feed = await self._open_direct(creds)
        except BaseException as exc:
            await self._close_failed(exc)
        self._feed = feed
        return feed

    async def _open_direct(self, creds: Credentials) -> WatchFeed:
        target = Target.of(creds.base_url, self._path, self._params,
                           ssl_context=creds.ssl_context, sni_hostname=creds.sni_hostname)
        header = await creds.authorization()
        timeouts = {"connect_timeout": self._client.connect_timeout,
                    "answer_timeout": self._inactivity}
        feed = self._new_feed(batched=True)
        protocol, answer = await open_watch(target, header, feed, **timeouts)
        if answer.status == 401 and creds.refreshable:
            fresh = await creds.reload(header)
            if fresh and fresh != header:
                feed = self._new_feed(batched=True)
                protocol, answer = await open_watch(target, fresh, feed, **timeouts)
        if answer.status != 200:
            raise http_error(self._cluster, self._what, answer.status, answer.reason,
                             answer.headers, answer.body, now=self._now)
        self._protocol = protocol
        feed.more = protocol.more
        self._watchdog = _Watchdog(
            lambda: None if feed.waiting else (feed.arrivals, feed.taken),
            protocol.close, self._inactivity)
        return feed

    async def _open_through_aiohttp(self) -> WatchFeed:
        """The proxied way: aiohttp's response, fed chunk by chunk by the reader."""
        exits = self._exits = AsyncExitStack()
        response = await exits.enter_async_context(
            self._client.request(self._path, self._params, read_timeout=self._inactivity))
        if response.status != 200:
            try:
                body = await response.read()
            except aiohttp.ClientError:
                body = b""
            raise http_error(self._cluster, self._what, response.status,
                             response.reason or "", response.headers, body, now=self._now)
        if response.connection is not None:  # the headers came: the watchdog takes over
            response.connection.protocol.read_timeout = None
        feed = self._new_feed()
        read = response.content.readany

        async def more() -> None:
            try:
                chunk = await read()
            except (aiohttp.ClientError, OSError) as exc:
                feed.finish(exc)
                return
            if chunk:
                feed.data(chunk)
            else:
                feed.finish(None)

        feed.more = more
        content = response.content
        self._watchdog = _Watchdog(
            lambda: None if feed.waiting else (content.total_bytes, feed.taken),
            response.close, self._inactivity)
        return feed


class _Watchdog:
    """Closes a stream through which nothing moved for `inactivity` seconds. `progress`
    says what moved (None: events wait for the reader, which is not silence). Looks four
    times per `inactivity` (one loop timer per watch per period, not one per chunk), so
    silence is caught within 1.25x the bound."""

    def __init__(self, progress: Callable[[], object], close: Callable[[], None],
                 inactivity: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._progress = progress
        self._close = close
        self._inactivity = inactivity
        self.fired = False
        self._seen = progress()
        self._since = self._loop.time()
        self._handle = self._loop.call_later(inactivity / 4, self._look)

    def _look(self) -> None:
        now = self._loop.time()
        seen = self._progress()
        if seen is None or seen != self._seen:
            self._seen, self._since = seen, now
        elif now - self._since >= self._inactivity:
            self.fired = True
            self._close()  # the reader's wait ends with an error or the end
            return
        self._handle = self._loop.call_later(self._inactivity / 4, self._look)

    def cancel(self) -> None:
        self._handle.cancel()
