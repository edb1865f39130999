"""One cluster's HTTP client, shared by the sources of all its kinds (aiohttp).

A cluster synced for every kind holds eight watches (pods, nodes, namespaces and five
workload resources) plus the lists of its full syncs. Sharing one client per cluster
means one credential load (an exec plugin runs once, not eight times), one TLS context and
one connection pool. Watches normally open connections of their own (`stream`, `wire`:
design 010) with the credentials they get here (`credentials()`); behind an HTTP proxy
they go through this pool too, which is sized so that every watch can hold its
connection while lists still get one (`watches` + `LIST_CONNECTIONS`).

Why aiohttp here, and httpx elsewhere: this is the hot path of an instance owning hundreds
of clusters. Measured on this machine (`bench/kube_wire.py`, docs/benchmarks.md
"Kubernetes wire"), a watch event arriving in a chunk of its own costs about 118 µs of CPU
through httpx/httpcore/anyio and about 60 µs through aiohttp, whose HTTP parser is compiled
and whose streams sit directly on asyncio; a list page is read 1.5x faster too. httpx stays
where a request is rare (probes of bk-cmdb, the BCS registry).

Credentials come from `connection.Credentials` (kubeconfig loaders, exec plugins,
service accounts): the Authorization header is asked for before each request (cheap
unless a refresh is due) and never stored on the session; a 401 reloads the credential
once and retries. The client is created lazily on first use: an unreadable kubeconfig or
a missing service account is a `SourceUnavailable` for the source that asked, retried with
backoff like any unreachable cluster (the file may appear or be fixed while we run).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from reconciler import SourceUnavailable

from .connection import USER_AGENT, ClusterEndpoint, Credentials, KubeConfigError, connect
from .errors import excerpt, http_error, transport_error

LIST_CONNECTIONS = 4
"""Connections beyond one per watch: lists, and a watch being reopened."""
CONNECT_TIMEOUT = 30.0
"""Seconds to connect and get response headers; a list's body gets `READ_TIMEOUT` more."""
READ_TIMEOUT = 120.0
LIST_READ_AHEAD = 16 * 1024 * 1024
"""Bytes of a list page's body read off the socket before anyone asks for them.

aiohttp stops reading a response once 2x its buffer size (64 KiB by default) waits
unread. The source asks for the next page while it reads this one (`KubeSource.list`), so
with the default that prefetch stalls after about 128 KiB until the reader comes back,
and the page arrives in 128 KiB steps between decodes; the server sits blocked on a full
socket meanwhile. A page is read whole into memory anyway, so letting it land whole costs
no memory the page does not: 500 Pods are about 3 MB, and this bound only guards against
a page far beyond that. Measured (docs/benchmarks.md, "Fourth pass"): a paged list of
100,000 Pods whose every object is vouched for, 1.25-1.38x a plain sequential read of the
same pages with the default, 0.99-1.06x with a whole page read ahead."""
PROBE_PATH = "/api/v1/pods"


class ClusterClient:
    """A lazily built aiohttp session for one cluster (see the module docstring)."""

    def __init__(self, endpoint: ClusterEndpoint, *, watches: int = 8,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.cluster_id = endpoint.id
        self._endpoint = endpoint
        self._watches = watches
        self._connect_timeout = connect_timeout
        self._creds: Credentials | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, creds: Credentials, *, watches: int = 8,
           connect_timeout: float = CONNECT_TIMEOUT) -> ClusterClient:
        """A client on credentials already loaded (`connect()` with non-default paths)."""
        client = cls(creds.endpoint, watches=watches, connect_timeout=connect_timeout)
        client._creds = creds
        return client

    @classmethod
    def from_url(cls, url: str, *, cluster_id: str | None = None, watches: int = 8
                 ) -> ClusterClient:
        """A plain-HTTP API server without credentials (the simulator, a kubectl proxy)."""
        return cls(ClusterEndpoint(id=cluster_id or url, server=url), watches=watches)

    def __repr__(self) -> str:
        return f"ClusterClient({self.cluster_id!r})"

    async def _open(self) -> tuple[aiohttp.ClientSession, Credentials]:
        if self._session is not None and self._creds is not None:
            return self._session, self._creds
        async with self._lock:
            if self._creds is None:
                try:
                    self._creds = await connect(self._endpoint)
                except KubeConfigError as exc:
                    raise SourceUnavailable(f"cluster {self.cluster_id}: {exc}") from None
            if self._session is None:
                creds = self._creds
                connector = aiohttp.TCPConnector(
                    limit=self._watches + LIST_CONNECTIONS,
                    ssl=creds.ssl_context if creds.ssl_context is not None else False)
                self._session = aiohttp.ClientSession(
                    connector=connector, trust_env=False,
                    headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
            assert self._session is not None and self._creds is not None
            return self._session, self._creds

    @property
    def connect_timeout(self) -> float:
        """Seconds to connect and get an answer's headers."""
        return self._connect_timeout

    async def credentials(self) -> Credentials:
        """The cluster's credentials, loaded on first use (raises `SourceUnavailable`)."""
        return (await self._open())[1]

    @asynccontextmanager
    async def request(self, path: str, params: Mapping[str, str], *,
                      read_timeout: float | None, read_ahead: int | None = None
                      ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET `path`; the response, whatever its status. `read_timeout` None: a stream
        (the caller bounds its silence). `read_ahead`: bytes of the body read before the
        caller asks for them (aiohttp's buffer; None: its default, right for streams,
        which are read as they come). Raises `aiohttp.ClientError`, `KubeConfigError`,
        `TimeoutError`, or `SourceUnavailable` when the client cannot be built."""
        session, creds = await self._open()
        header = await creds.authorization()
        options: dict[str, Any] = {
            "params": params,
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout,
                                             sock_read=read_timeout),
        }
        if read_ahead is not None:
            options["read_bufsize"] = read_ahead
        if creds.proxy:
            options["proxy"] = creds.proxy
        if creds.sni_hostname:
            options["server_hostname"] = creds.sni_hostname
        url = creds.base_url + path
        headers = {"Authorization": header} if header else {}
        response = await session.get(url, headers=headers, **options)
        if response.status == 401 and creds.refreshable:
            fresh = await creds.reload(header)
            if fresh and fresh != header:
                response.release()
                response = await session.get(url, headers={"Authorization": fresh},
                                             **options)
        try:
            yield response
        finally:
            response.release()

    async def aclose(self) -> None:
        """Close the session (its connections)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def probe(endpoint: ClusterEndpoint, *, request_timeout: float = 10.0) -> None:
    """Reach the cluster and list one Pod; raise a one-line error if that fails.

    Raises `KubeConfigError` (unusable settings), `AccessDenied` (401/403) or
    `SourceUnavailable` (unreachable, not an API server, other HTTP errors).
    """
    creds = await connect(endpoint)
    client = ClusterClient.of(creds, watches=0, connect_timeout=request_timeout)
    what = f"GET {creds.base_url}{PROBE_PATH}"
    try:
        async with asyncio.timeout(request_timeout * 2):
            async with client.request(PROBE_PATH, {"limit": "1"},
                                      read_timeout=request_timeout) as response:
                body = await response.read()
                status, reason, headers = response.status, response.reason, response.headers
    except (aiohttp.ClientError, TimeoutError, KubeConfigError) as exc:
        raise transport_error(endpoint.id, f"cannot reach {creds.base_url}", exc) from None
    finally:
        await client.aclose()
    if status != 200:
        raise http_error(endpoint.id, what, status, reason or "", headers, body)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or "items" not in doc:
        raise SourceUnavailable(
            f"cluster {endpoint.id}: {creds.base_url} does not answer like a Kubernetes API"
            f" server: {excerpt(body)}"
        )
