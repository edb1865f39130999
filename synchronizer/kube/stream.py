"""One watch stream: an HTTP request held open, its answer as lines, bounded by silence.

The middle layer of the watch (kopf's `watch_objs`): it sends one watch request, maps a
refused or failed answer onto the engine's errors, and yields the stream's lines (framed
by `lines.LineFramer`), the lines of each network chunk together, until the server ends
it. It reads the response with `readany()` itself rather than through aiohttp's chunk
iterator: one coroutine call per chunk instead of three generator resumptions.

Silence is bounded: a stream that delivers nothing at all — no event, no bookmark — for
`inactivity` seconds is dead even if its TCP connection looks alive (a proxy that stopped
forwarding, a half-open socket), and ends with `Stalled`, so the reconnecting loop above
reopens it. The bound is a watchdog that looks a few times per `inactivity` whether bytes
arrived or lines were consumed since (a slow consumer holding the stream back is not
silence). Not aiohttp's socket read
timeout: that one replaces a loop timer at every chunk, and with a fleet's thousands of
watches bookmarking each second the timers were a fifth of the instance's idle CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime

import aiohttp

from reconciler import Stalled

from .client import ClusterClient
from .connection import KubeConfigError
from .errors import http_error, transport_error
from .lines import LineFramer


async def watch_lines(
    client: ClusterClient,
    path: str,
    params: Mapping[str, str],
    *,
    cluster: str,
    what: str,
    inactivity: float,
    max_line: int,
    on_oversized: Callable[[], None],
    now: Callable[[], datetime],
) -> AsyncIterator[list[bytes]]:
    """Yield the lines of one watch stream, a chunk's at a time (never an empty list);
    return when the server ends it.

    Raises `Stalled` after `inactivity` seconds without data, `Expired`/`Refused`/
    `SourceUnavailable` for an HTTP error answer, `SourceUnavailable` for a broken exchange.
    """
    stalled = Stalled(f"cluster {cluster}: watch stalled: no event or bookmark for"
                      f" {inactivity:g} s")
    watchdog: _Watchdog | None = None
    try:
        async with client.request(path, params, read_timeout=inactivity) as response:
            if response.status != 200:
                try:
                    body = await response.read()
                except aiohttp.ClientError:
                    body = b""
                raise http_error(cluster, what, response.status, response.reason or "",
                                 response.headers, body, now=now)
            watchdog = _Watchdog(response, inactivity)
            framer = LineFramer(max_line=max_line, on_oversized=on_oversized)
            read = response.content.readany
            while chunk := await read():
                lines = framer.feed(chunk)
                if lines:
                    watchdog.consumed += 1
                    yield lines
            lines = framer.end()
            if lines:
                yield lines
            if watchdog.fired:
                raise stalled
    except TimeoutError:  # aiohttp's ServerTimeoutError is one too (the headers' wait)
        raise stalled from None
    except (aiohttp.ClientError, KubeConfigError) as exc:
        if watchdog is not None and watchdog.fired:
            raise stalled from None
        raise transport_error(cluster, what, exc) from None
    finally:
        if watchdog is not None:
            watchdog.cancel()


class _Watchdog:
    """Closes a stream through which nothing moved for `inactivity` seconds: no byte
    arrived and no line was consumed. Looks four times per `inactivity` (one loop timer per
    watch per period, not one per chunk), so silence is caught within 1.25x the bound."""

    def __init__(self, response: aiohttp.ClientResponse, inactivity: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._response = response
        self._inactivity = inactivity
        self.consumed = 0
        """Lines handed on (counted by the reader: a slow consumer is not silence)."""
        self.fired = False
        self._seen = (response.content.total_bytes, 0)
        self._since = self._loop.time()
        self._handle = self._loop.call_later(inactivity / 4, self._look)
        if response.connection is not None:  # the headers came: the socket timeout's
            response.connection.protocol.read_timeout = None  # work is done, this takes over

    def _look(self) -> None:
        now = self._loop.time()
        seen = (self._response.content.total_bytes, self.consumed)
        if seen != self._seen:
            self._seen, self._since = seen, now
        elif now - self._since >= self._inactivity:
            self.fired = True
            self._response.close()  # the reader's wait ends with an error or the end
            return
        self._handle = self._loop.call_later(self._inactivity / 4, self._look)

    def cancel(self) -> None:
        self._handle.cancel()
