"""One cluster's HTTP client, shared by the sources of all its kinds.

A cluster synced for every kind holds eight watches (pods, nodes, namespaces and five
workload resources) plus the lists of its full syncs. Sharing one `httpx.AsyncClient` per
cluster means one credential load (an exec plugin runs once, not eight times), one TLS
context and one connection pool, sized so that every watch can hold its connection while
lists still get one (`max_connections` = watches + `LIST_CONNECTIONS`).

The client is created lazily on first use: an unreadable kubeconfig or a missing service
account is a `SourceUnavailable` for the source that asked, retried with backoff like any
unreachable cluster (the file may appear or be fixed while we run).
"""

from __future__ import annotations

import asyncio

import httpx

from reconciler import SourceUnavailable

from .connection import ClusterEndpoint, KubeConfigError, client_kwargs, connect

LIST_CONNECTIONS = 4
"""Connections beyond one per watch: lists, probes, and a watch being reopened."""


class ClusterClient:
    """A lazily built `httpx.AsyncClient` for one cluster (see the module docstring)."""

    def __init__(self, endpoint: ClusterEndpoint, *, watches: int = 8) -> None:
        self.cluster_id = endpoint.id
        self._endpoint: ClusterEndpoint | None = endpoint
        self._client: httpx.AsyncClient | None = None
        self._owned = True
        self._watches = watches
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, cluster_id: str | None = None, watches: int = 8
                 ) -> ClusterClient:
        """A plain-HTTP API server without credentials (the simulator, a kubectl proxy)."""
        return cls(ClusterEndpoint(id=cluster_id or url, server=url), watches=watches)

    @classmethod
    def from_httpx(cls, client: httpx.AsyncClient, *, cluster_id: str) -> ClusterClient:
        """Use a caller's client (its base URL is the API server); the caller closes it."""
        self = cls(ClusterEndpoint(id=cluster_id, server=str(client.base_url)))
        self._endpoint = None
        self._client = client
        self._owned = False
        return self

    def __repr__(self) -> str:
        return f"ClusterClient({self.cluster_id!r})"

    async def get(self) -> httpx.AsyncClient:
        """The client, built on first use; `SourceUnavailable` when it cannot be built."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                assert self._endpoint is not None
                try:
                    creds = await connect(self._endpoint)
                except KubeConfigError as exc:
                    raise SourceUnavailable(f"cluster {self.cluster_id}: {exc}") from None
                limits = httpx.Limits(max_connections=self._watches + LIST_CONNECTIONS,
                                      max_keepalive_connections=self._watches + 1)
                self._client = httpx.AsyncClient(**client_kwargs(creds, limits=limits))
            return self._client

    async def aclose(self) -> None:
        """Close the client if this object built it."""
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
