"""`BkCmdbClient`: one bk-cmdb, its settings, one httpx client, and the typed APIs on top.

The object a pusher holds per bk-cmdb: `client.kube` (clusters, namespaces, nodes, workloads,
pods), `client.container` (the original design's pod API), `client.topology` (hosts by IP,
modules by name). They share one `Transport`, hence one token bucket (the pace is per bk-cmdb,
whatever the route) and one connection pool.

httpx-style injection: pass `client=` (an `httpx.AsyncClient` you own and close) or
`transport=` (e.g. `httpx.MockTransport`), never both; with neither, the client makes and
closes its own. `observer=` receives (endpoint, outcome, seconds) for every attempt — the
product maps it onto `bkcmdb_sync_bkcmdb_requests_total{endpoint,status}` and
`bkcmdb_sync_bkcmdb_request_duration_seconds{endpoint}`. `clock`, `sleep` and `rng` exist so
tests can see the waits the client chose without waiting.
"""

from __future__ import annotations

import asyncio
import random
from types import TracebackType
from typing import Self

import httpx

from .container import ContainerApi
from .kube import KubeApi
from .ratelimit import Clock, Sleep, loop_clock
from .settings import BkCmdbSettings
from .topology import TopologyApi, TopologyCache
from .transport import RequestObserver, Transport


class BkCmdbClient:
    """Typed access to one bk-cmdb; use as `async with BkCmdbClient(settings) as cmdb:`."""

    def __init__(self, settings: BkCmdbSettings, *, client: httpx.AsyncClient | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 observer: RequestObserver | None = None, clock: Clock = loop_clock,
                 sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.transport = Transport(settings, client=client, transport=transport,
                                   observer=observer, clock=clock, sleep=sleep, rng=rng)
        self.kube = KubeApi(self.transport)
        self.topology = TopologyApi(self.transport)
        self.topology_cache = TopologyCache(self.topology, clock=clock)
        self.container = ContainerApi(self.transport, self.topology_cache)

    def __repr__(self) -> str:
        return f"BkCmdbClient({self.settings!r})"

    async def aclose(self) -> None:
        """Close the httpx client if this client made it."""
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
