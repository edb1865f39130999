"""Helpers of the registries suite: a home cluster with the SyncCluster CRD in the
simulator, SyncCluster writes over real HTTP, instances with registries configured, and
waits that are events (the simulator's `wait_until`, the controller's) bounded by GUARD.

tests/registries is on sys.path (rootdir conftest, no __init__.py here).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from synchronizer.app import Instance
from synchronizer.settings import (
    ClusterSettings,
    CmdbSettings,
    CrdRegistrySettings,
    HttpRegistrySettings,
    InstanceSettings,
    RegistriesSettings,
    Settings,
    SyncSettings,
    ZooKeeperSettings,
)
from synchronizer.simulator import SimCluster, Simulator
from synchronizer.simulator.crd import SYNC_CLUSTER_CRD, install_crd
from synchronizer.simulator.nodes import make_namespace

GROUP, VERSION, PLURAL = "bkcmdb.bkbcs.tencent.com", "v1", "syncclusters"
NS = "bkcmdb"
HOME_TOKEN = "home-token"
ADMIN_TOKEN = "admin-secret-token"
FINALIZER = f"{GROUP}/finalizer"
GUARD = 60.0
"""Upper bound on any single wait: a hang fails the test, it never times it."""
FAST = {"linger": 0.005, "backoff_max": 0.5, "full_sync_interval": 3600, "lease_ttl": 5}
"""The `sync` section of the suite: quick retries, no periodic full sync."""
PODS = 12
"""Pods per target cluster (with their namespaces, nodes and workloads)."""


def sc_path(name: str = "", namespace: str = NS) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def make_home(sim: Simulator) -> SimCluster:
    """The home cluster: the CRD installed, namespace `bkcmdb`, a bearer token."""
    home = sim.add_cluster("home", token=HOME_TOKEN)
    install_crd(home, SYNC_CLUSTER_CRD)
    home.create(make_namespace(NS), resource="namespaces")
    return home


def settings_for(sim: Simulator, dsn: str, *, instance: str = "sync-a",
                 clusters: Sequence[ClusterSettings] = (), crd: bool = True,
                 bcs: str | None = None, bcs_token: str = "", bcs_interval: float = 3600,
                 zk: str | None = None, zk_root: str = "/bkcmdb", admin: bool = True,
                 pull_interval: float = 3600, home_url: str | None = None,
                 **sync: Any) -> Settings:
    """Settings of one instance; ports 0 (the OS picks)."""
    home = home_url or sim.url_for("home")
    registries = RegistriesSettings(
        crd=CrdRegistrySettings(enabled=crd, server=home if crd else "",
                                token=SecretStr(HOME_TOKEN) if crd else None),
        http=HttpRegistrySettings(url=bcs or "", token=SecretStr(bcs_token),
                                  interval=bcs_interval))
    return Settings.model_construct(
        instance=InstanceSettings.model_construct(
            id=instance, address="127.0.0.1", port=0, metric_port=0,
            admin_token=SecretStr(ADMIN_TOKEN) if admin else None),
        zookeeper=ZooKeeperSettings(hosts=zk, root=zk_root, session_timeout=2.0) if zk else None,
        cmdb=CmdbSettings.model_construct(dsn=SecretStr(dsn)),
        sync=SyncSettings(**{**FAST, "cluster_pull_interval": pull_interval, **sync}),
        clusters=list(clusters), registries=registries)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Instance]:
    """A started instance, stopped gracefully on exit."""
    instance = Instance(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(instance.run(stop))
    try:
        async with asyncio.timeout(GUARD):
            while not instance.http.bound or instance.store is None:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield instance
    finally:
        stop.set()
        await task


class Home:
    """SyncClusters and Secrets in the home cluster, written over HTTP like kubectl."""

    def __init__(self, sim: Simulator, cluster: SimCluster) -> None:
        self.sim = sim
        self.cluster = cluster
        self.http = httpx.AsyncClient(base_url=sim.url_for("home"), timeout=10,
                                      headers={"Authorization": f"Bearer {HOME_TOKEN}"})

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create(self, name: str, spec: dict[str, Any], namespace: str = NS) -> None:
        reply = await self.http.post(sc_path(namespace=namespace), json={
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SyncCluster",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec})
        assert reply.status_code == 201, reply.text

    async def patch(self, name: str, spec: dict[str, Any]) -> None:
        reply = await self.http.patch(
            sc_path(name), json={"spec": spec},
            headers={"Content-Type": "application/merge-patch+json"})
        assert reply.status_code == 200, reply.text

    async def delete(self, name: str) -> None:
        reply = await self.http.delete(sc_path(name))
        assert reply.status_code == 200, reply.text

    async def secret(self, name: str, data: dict[str, str]) -> None:
        reply = await self.http.post(f"/api/v1/namespaces/{NS}/secrets", json={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})
        assert reply.status_code == 201, reply.text

    def get(self, name: str) -> dict[str, Any] | None:
        return self.cluster.get(NS, name, resource=PLURAL)

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def ready(self, name: str) -> dict[str, Any]:
        conds = [c for c in self.status(name).get("conditions") or () if c["type"] == "Ready"]
        return conds[0] if conds else {}

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait (bounded) until `predicate` holds; re-checked on every home change."""
        async with asyncio.timeout(GUARD):
            await self.cluster.wait_until(predicate)

    async def until_status(self, name: str, **want: Any) -> dict[str, Any]:
        """Wait until the SyncCluster's status has these values (`reason`/`ready` look at
        the Ready condition)."""
        def holds() -> bool:
            status, ready = self.status(name), self.ready(name)
            for key, value in want.items():
                got = ready.get("reason") if key == "reason" else (
                    ready.get("status") if key == "ready" else status.get(key))
                if got != value:
                    return False
            return True
        await self.until(holds)
        return self.status(name)


def health(instance: Instance, origin: str) -> Any:
    """One registry's health record."""
    return next(h for h in instance.pull.health if h.origin == origin)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) until `predicate` holds, looking again every few milliseconds: for
    state that has no event of its own (the merge's conflicts, a registry's health)."""
    async with asyncio.timeout(GUARD):
        while not predicate():
            await asyncio.sleep(0.02)


async def active_rows(dsn: str, cluster: str) -> dict[str, int]:
    """Active rows of `cluster` per table, read through a store of the test's own."""
    from synchronizer.cmdb import open_store
    from synchronizer.kinds import KINDS

    store = await open_store(dsn)
    try:
        return {name: await store.table(kind).count_active(cluster)  # type: ignore[arg-type]
                for name, kind in KINDS.items()}
    finally:
        await store.close()


async def rows(dsn: str, cluster: str, kind: str = "pods") -> list[dict[str, Any]]:
    """Every row of `cluster` in one kind's table."""
    from synchronizer.cmdb import open_store
    from synchronizer.kinds import KINDS

    store = await open_store(dsn)
    try:
        return await store.table(KINDS[kind]).rows(cluster)  # type: ignore[arg-type]
    finally:
        await store.close()
