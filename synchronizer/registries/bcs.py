"""The BCS cluster manager as a registry: BlueKing users' clusters, read over HTTP.

`GET <url>/bcsapi/v4/clustermanager/v1/cluster` with `Authorization: Bearer <token>`
answers `{"code": 0, "result": true, "data": [cluster, ...]}` (bcs-cluster-manager's
ListCluster through the BCS API gateway; `synchronizer.simulator.bcs` documents the
fields). Of its clusters, the k8s ones that are not virtual are ours: `clusterID` is the
cluster id, `businessID` (a string there) the biz_id, and each is reached through the
gateway's Kubernetes proxy `<url>/clusters/<clusterID>` with the same token
(`SecretRef("registry", "http")`, which every member resolves from its own config).

RUNNING clusters run. A cluster listed in another status (CREATING, DELETING, FALURE...)
is *held*: stopped, but still declared, so it is never taken for a removed cluster and
its rows are never soft-deleted, whatever `sync.on_cluster_removed` says - the Go
original deleted every CMDB object of a cluster that was briefly not RUNNING. Only a
cluster that disappears from the list (DELETED clusters are not listed) leaves the
registry. A failed answer (HTTP error, `result: false`, a reset) raises: the registry
keeps its last good answer (`RegistryPull`).

Polled every `interval` seconds: the master may pull more often (another registry kicked
it), and is then answered from the last list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from .spec import ClusterSpec, Origin, SecretRef

LIST_PATH = "/bcsapi/v4/clustermanager/v1/cluster"
TOKEN_REF = SecretRef("registry", "http")
"""The gateway token, as a cluster spec names it."""
REQUEST_TIMEOUT = 30.0
"""Seconds for the list request."""
RUNNING = "RUNNING"


class BcsError(RuntimeError):
    """The cluster manager did not give a usable answer; one line, no secret."""


def spec_from(cluster: Mapping[str, Any], url: str, *, insecure: bool = False,
              ca_file: str | None = None) -> ClusterSpec | None:
    """The spec of one listed cluster; None when it is not a cluster we sync."""
    if cluster.get("engineType") != "k8s" or cluster.get("clusterType") == "virtual":
        return None
    cluster_id = str(cluster.get("clusterID") or "")
    if not cluster_id:
        return None
    try:
        biz_id = int(str(cluster.get("businessID") or "0"))
    except ValueError:
        biz_id = 0
    status = str(cluster.get("status") or "")
    hold = None if status == RUNNING else f"NotRunning: BCS status {status or '(none)'}"
    return ClusterSpec(id=cluster_id, biz_id=biz_id, origin=Origin.HTTP,
                       server=f"{url}/clusters/{cluster_id}", token=TOKEN_REF,
                       insecure=insecure, ca_file=ca_file, source="bcs", hold=hold)


class BcsRegistry:
    """The BCS cluster manager's clusters; see the module docstring."""

    origin = Origin.HTTP

    def __init__(self, url: str, token: str, *, interval: float, insecure: bool = False,
                 ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.interval = interval
        self._insecure = insecure
        self._ca_file = ca_file
        self._last: dict[str, ClusterSpec] | None = None
        self._fetched_at = float("-inf")
        self.fetches = 0

    async def lookup(self, name: str) -> str:
        """The `registry` secret source: the gateway token."""
        return self._token

    async def specs(self) -> Mapping[str, ClusterSpec]:
        """The clusters to sync, listed again once `interval` has passed."""
        now = asyncio.get_running_loop().time()
        if self._last is not None and now - self._fetched_at < self.interval:
            return self._last
        self._last = await self.fetch()
        self._fetched_at = now
        return self._last

    async def fetch(self) -> dict[str, ClusterSpec]:
        """List the clusters now."""
        self.fetches += 1
        verify: Any = False if self._insecure else (self._ca_file or True)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, verify=verify,
                                         trust_env=False) as http:
                response = await http.get(self.url + LIST_PATH, headers=headers)
        except httpx.HTTPError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise BcsError(f"BCS cluster manager {self.url}: {type(exc).__name__}"
                           + (f": {detail}" if detail else "")) from None
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            doc = None
        if response.status_code != 200 or not isinstance(doc, dict):
            raise BcsError(f"BCS cluster manager {self.url}: HTTP {response.status_code}"
                           + (f": {doc.get('message')}" if isinstance(doc, dict) else ""))
        if doc.get("result") is not True or doc.get("code") not in (0, None):
            raise BcsError(f"BCS cluster manager {self.url}: code {doc.get('code')}:"
                           f" {doc.get('message')}")
        out: dict[str, ClusterSpec] = {}
        for cluster in doc.get("data") or ():
            if isinstance(cluster, Mapping):
                spec = spec_from(cluster, self.url, insecure=self._insecure,
                                 ca_file=self._ca_file)
                if spec is not None:
                    out[spec.id] = spec
        return out
