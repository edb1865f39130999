"""The home cluster: where SyncCluster resources and the Secrets they name live.

Every instance may need it, not only the master: the master lists SyncClusters, writes
their status and runs the kopf operator against it, but the member that owns a cluster
declared by a SyncCluster resolves that cluster's credentials (`SecretRef("secret",
"namespace/name#key")`) itself, through the home cluster, so no secret ever travels in
ZooKeeper data. Reached like any synced cluster (`registries.crd.server` with an optional
token, a kubeconfig, or the pod's service account: `synchronizer.kube.connection`), with
one shared httpx client.

Lists are paged (`limit`/`continue`) so a home cluster with thousands of SyncClusters is
read in bounded pieces, and a list is one snapshot (every page at the first page's
resourceVersion, as the API server guarantees for a continued list).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
import orjson

from synchronizer.kube import ClusterEndpoint, Credentials, KubeConfigError, connect
from synchronizer.kube.connection import USER_AGENT, Loaded, load
from synchronizer.settings import CrdRegistrySettings

from .resolve import SecretError

GROUP = "bkcmdb.bkbcs.tencent.com"
VERSION = "v1"
PLURAL = "syncclusters"
PAGE = 500
"""SyncClusters per list page."""
REQUEST_TIMEOUT = 15.0
"""Seconds for one request to the home cluster."""
HOME_ID = "home"
"""The home cluster's name in messages."""


class HomeError(RuntimeError):
    """The home cluster could not answer; one line, never a secret."""


def home_endpoint(settings: CrdRegistrySettings) -> ClusterEndpoint:
    """How to reach the home cluster (default: the pod's service account)."""
    return ClusterEndpoint(
        id=HOME_ID, server=settings.server or None,
        token=settings.token.get_secret_value() if settings.token else None,
        ca_file=settings.ca_file or None, insecure=settings.insecure_skip_tls_verify,
        kubeconfig=settings.kubeconfig or None, context=settings.context or None)


def sync_cluster_path(namespace: str = "", name: str = "") -> str:
    """The URL path of SyncClusters (all, a namespace's, or one)."""
    base = f"/apis/{GROUP}/{VERSION}"
    path = f"{base}/namespaces/{namespace}/{PLURAL}" if namespace else f"{base}/{PLURAL}"
    return f"{path}/{name}" if name else path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _message(response: httpx.Response) -> str:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        doc = None
    detail = doc.get("message") if isinstance(doc, dict) else None
    text = f"HTTP {response.status_code}"
    return f"{text}: {str(detail)[:200]}" if detail else text


class _Auth(httpx.Auth):
    """The current credential on each request (refreshed by its loader when due); on a 401
    the credential is reloaded once and the request retried. Never stored on the client."""

    def __init__(self, creds: Credentials) -> None:
        self._creds = creds

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        header = await self._creds.authorization()
        if header:
            request.headers["Authorization"] = header
        if self._creds.sni_hostname:
            request.extensions["sni_hostname"] = self._creds.sni_hostname
        response = yield request
        if response.status_code == 401 and self._creds.refreshable:
            fresh = await self._creds.reload(header)
            if fresh and fresh != header:
                request.headers["Authorization"] = fresh
                yield request


def _client(creds: Credentials) -> httpx.AsyncClient:
    """An httpx client of the home cluster (requests here are rare: httpx, as for probes)."""
    options: dict[str, Any] = {}
    if creds.proxy:
        options["proxy"] = creds.proxy
    return httpx.AsyncClient(
        base_url=creds.base_url, auth=_Auth(creds), trust_env=False,
        verify=creds.ssl_context if creds.ssl_context is not None else True,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        timeout=httpx.Timeout(REQUEST_TIMEOUT), **options)


class HomeCluster:
    """A shared client of the home cluster; see the module docstring."""

    def __init__(self, endpoint: ClusterEndpoint) -> None:
        self.endpoint = endpoint
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    def loaded(self) -> Loaded:
        """The credentials as read now (blocking: files, maybe an exec plugin); for kopf."""
        return load(self.endpoint)

    async def _http(self) -> httpx.AsyncClient:
        async with self._lock:
            if self._client is None:
                try:
                    creds = await connect(self.endpoint)
                except KubeConfigError as exc:
                    raise HomeError(f"home cluster: {exc}") from None
                self._client = _client(creds)
            return self._client

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, content_type: str | None = None) -> httpx.Response:
        """One request; transport failures become `HomeError`."""
        client = await self._http()
        headers = {"Content-Type": content_type} if content_type else None
        body = orjson.dumps(json) if json is not None else None
        try:
            return await client.request(method, path, params=params, content=body,
                                        headers=headers)
        except (httpx.HTTPError, KubeConfigError) as exc:
            raise HomeError(f"home cluster {client.base_url}: {type(exc).__name__}: "
                            f"{_first_line(exc)}") from None

    async def list_sync_clusters(self, namespace: str = "") -> list[dict[str, Any]]:
        """Every SyncCluster (of `namespace`, or all), as one consistent list."""
        items: list[dict[str, Any]] = []
        params = {"limit": str(PAGE)}
        while True:
            response = await self.request("GET", sync_cluster_path(namespace), params=params)
            if response.status_code != 200:
                raise HomeError(f"home cluster: listing SyncClusters: {_message(response)}")
            doc = orjson.loads(response.content)
            items.extend(doc.get("items") or ())
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {"limit": str(PAGE), "continue": token}

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge `status` into a SyncCluster's status; False if the object is gone."""
        response = await self.request(
            "PATCH", sync_cluster_path(namespace, name) + "/status",
            json={"status": status}, content_type="application/merge-patch+json")
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise HomeError(f"home cluster: status of SyncCluster {namespace}/{name}: "
                            f"{_message(response)}")
        return True

    async def secret(self, ref: str) -> str:
        """The value of `namespace/name#key` (a `secret` reference); `SecretError` else."""
        where, _, key = ref.partition("#")
        namespace, _, name = where.partition("/")
        if not (namespace and name and key):
            raise SecretError(f"secret secret:{ref}: not namespace/name#key")
        try:
            response = await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except HomeError as exc:
            raise SecretError(f"secret secret:{ref}: {exc}") from None
        if response.status_code == 404:
            raise SecretError(f"secret secret:{ref}: Secret {namespace}/{name} not found")
        if response.status_code != 200:
            raise SecretError(f"secret secret:{ref}: reading Secret {namespace}/{name}: "
                              f"{_message(response)}")
        data = (orjson.loads(response.content).get("data") or {})
        if key not in data:
            raise SecretError(f"secret secret:{ref}: Secret {namespace}/{name} has no key"
                              f" {key!r}")
        try:
            return base64.b64decode(data[key], validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise SecretError(f"secret secret:{ref}: key {key!r} is not base64 text") from None

    async def reachable(self, namespace: str = "") -> None:
        """List one SyncCluster (check-config --connect); `HomeError` if that fails."""
        response = await self.request("GET", sync_cluster_path(namespace),
                                      params={"limit": "1"})
        if response.status_code != 200:
            raise HomeError(f"home cluster: listing SyncClusters: {_message(response)}")

    async def aclose(self) -> None:
        """Close the shared client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
