"""One watch stream: an HTTP request held open, its answer as lines, bounded by silence.

The middle layer of the watch (kopf's `watch_objs`): it sends one watch request, maps a
refused or failed answer onto the engine's errors, and yields the stream's lines (framed
by `lines.iter_lines`) until the server ends it. Silence is bounded: a stream that
delivers nothing at all — no event, no bookmark — for `inactivity` seconds is dead even if
its TCP connection looks alive (a proxy that stopped forwarding, a half-open socket), and
ends with `Stalled`, so the reconnecting loop above reopens it. The bound is aiohttp's
socket read timeout, restarted by the transport itself on every chunk (no timer per event
in Python), and suspended while a slow consumer has paused reading (back-pressure is not
silence).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime

import aiohttp

from reconciler import Stalled

from .client import ClusterClient
from .connection import KubeConfigError
from .errors import http_error, transport_error
from .lines import iter_lines


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
) -> AsyncIterator[bytes]:
    """Yield the lines of one watch stream; return when the server ends it.

    Raises `Stalled` after `inactivity` seconds without data, `Expired`/`Refused`/
    `SourceUnavailable` for an HTTP error answer, `SourceUnavailable` for a broken exchange.
    """
    try:
        async with client.request(path, params, read_timeout=inactivity) as response:
            if response.status != 200:
                try:
                    body = await response.read()
                except aiohttp.ClientError:
                    body = b""
                raise http_error(cluster, what, response.status, response.reason or "",
                                 response.headers, body, now=now)
            async for line in iter_lines(response.content.iter_any(), max_line=max_line,
                                         on_oversized=on_oversized):
                yield line
    except TimeoutError:  # aiohttp's ServerTimeoutError is one too
        raise Stalled(f"cluster {cluster}: watch stalled: no event or bookmark for"
                      f" {inactivity:g} s") from None
    except (aiohttp.ClientError, KubeConfigError) as exc:
        raise transport_error(cluster, what, exc) from None
