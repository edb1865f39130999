"""One watch stream: an HTTP request held open, its answer as lines, bounded by silence.

The middle layer of the watch (kopf's `watch_objs`): it sends one watch request, maps a
refused or failed answer onto the engine's errors, and yields the stream's lines (framed
by `lines.iter_lines`) until the server ends it. Silence is bounded: a stream that
delivers nothing at all — no event, no bookmark — for `inactivity` seconds is dead even if
its TCP connection looks alive (a proxy that stopped forwarding, a half-open socket), and
ends with `Stalled`, so the reconnecting loop above reopens it. httpx's own read timeout is
off for this request: the inactivity bound replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime

import httpx

from reconciler import Stalled

from .connection import KubeConfigError
from .errors import http_error, transport_error
from .lines import iter_lines


async def _chunks(response: httpx.Response, deadline: Callable[[], float], *, cluster: str,
                  inactivity: float) -> AsyncIterator[bytes]:
    chunks = aiter(response.aiter_bytes())
    while True:
        try:
            async with asyncio.timeout_at(deadline()):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise Stalled(f"cluster {cluster}: watch stalled: no event or bookmark for"
                          f" {inactivity:g} s") from None
        yield chunk


async def watch_lines(
    client: httpx.AsyncClient,
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
    loop = asyncio.get_running_loop()
    state = {"deadline": loop.time() + inactivity}
    request = client.build_request("GET", path, params=dict(params),
                                   timeout=httpx.Timeout(30.0, read=None))
    try:
        async with asyncio.timeout_at(state["deadline"]):
            response = await client.send(request, stream=True)
    except TimeoutError:
        raise Stalled(f"cluster {cluster}: watch stalled: no response in {inactivity:g} s"
                      ) from None
    except (httpx.HTTPError, KubeConfigError) as exc:
        raise transport_error(cluster, what, exc) from None
    try:
        if response.status_code != 200:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            raise http_error(cluster, what, response, body, now=now)

        def deadline() -> float:
            return state["deadline"]

        chunks = _chunks(response, deadline, cluster=cluster, inactivity=inactivity)
        async for line in iter_lines(chunks, max_line=max_line, on_oversized=on_oversized):
            yield line
            state["deadline"] = loop.time() + inactivity
    except (httpx.HTTPError, KubeConfigError) as exc:
        raise transport_error(cluster, what, exc) from None
    finally:
        await response.aclose()
