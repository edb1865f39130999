"""One reconciler wired to real parts: the simulated API server over HTTP, a `KubeSource` of
pods, and the MariaDB store with an audit trigger (the oracle for "stored versions never go
back"), under a cluster supervisor when fenced. Used by the single-instance fault tests."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymysql

from reconciler import (
    ClusterId,
    ClusterReconciler,
    ClusterSupervisor,
    Fence,
    ReconcilerSettings,
)
from synchronizer.cmdb import CmdbStore, open_store
from synchronizer.kinds import PODS, Projection
from synchronizer.kinds.pods import POD, project_pod_dict
from synchronizer.kube import ClusterClient, KubeSource
from synchronizer.metrics import PrometheusMetrics
from synchronizer.simulator import SimCluster, Simulator, populate

CLUSTER_ONLY = frozenset({"bkcmdb_sync_lease_acquisitions_total",
                          "bkcmdb_sync_reconciler_restarts_total"})


def project(pod: Any, *, biz_id: int, observed: datetime) -> Any:
    return project_pod_dict(pod, Projection(resource=POD, biz_id=biz_id, observed=observed))

TIMEOUT = 60
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

AUDIT = [
    "CREATE TABLE pods_audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, cluster_id VARCHAR(128),"
    " uid VARCHAR(64), resource_version BIGINT, state VARCHAR(16), checksum VARCHAR(64))",
    "CREATE TRIGGER pods_audit_insert AFTER INSERT ON pods FOR EACH ROW INSERT INTO pods_audit"
    " (cluster_id, uid, resource_version, state, checksum) VALUES (NEW.cluster_id, NEW.uid,"
    " NEW.resource_version, NEW.state, NEW.checksum)",
    "CREATE TRIGGER pods_audit_update AFTER UPDATE ON pods FOR EACH ROW INSERT INTO pods_audit"
    " (cluster_id, uid, resource_version, state, checksum) SELECT NEW.cluster_id, NEW.uid,"
    " NEW.resource_version, NEW.state, NEW.checksum FROM DUAL"
    " WHERE NEW.resource_version <> OLD.resource_version OR NEW.checksum <> OLD.checksum",
]


def admin(dsn: str) -> pymysql.connections.Connection:
    """A plain synchronous connection to the test database, for oracles and sabotage."""
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    return pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", database=u.path.lstrip("/"),
                           autocommit=True)


def install_audit(dsn: str) -> None:
    """Create the audit table and triggers (after the store created `pods`)."""
    conn = admin(dsn)
    with conn.cursor() as cur:
        for statement in AUDIT:
            cur.execute(statement)
    conn.close()


def audit_regressions(dsn: str) -> list[tuple[str, int, int]]:
    """(uid, earlier version, later version) wherever a stored version went backwards.

    A row set to version 0 is a declared version reset (the cluster's versions went
    backwards: rebuilt or etcd restored, TEST-MATRIX row 6): the key's history starts
    afresh there; that is the only way down the product may take."""
    conn = admin(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT uid, resource_version FROM pods_audit ORDER BY id")
        history = cur.fetchall()
    conn.close()
    last: dict[str, int] = {}
    bad = []
    for uid, version in history:
        if version == 0:
            last.pop(uid, None)
            continue
        if version < last.get(uid, 0):
            bad.append((uid, last[uid], version))
        last[uid] = max(version, last.get(uid, 0))
    return bad


def audit_count(dsn: str) -> int:
    """How many row changes the audit trigger has seen."""
    conn = admin(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM pods_audit")
        (n,) = cur.fetchone()
    conn.close()
    return int(n)


@dataclass
class Harness:
    """A simulator cluster, a store and one running reconciler between them."""

    sim: Simulator
    cluster: SimCluster
    store: CmdbStore
    dsn: str
    settings: ReconcilerSettings
    metrics: PrometheusMetrics = field(default_factory=PrometheusMetrics)
    biz_id: int = 7
    source: KubeSource | None = None
    rec: ClusterReconciler | None = None
    supervisor: ClusterSupervisor | None = None
    task: asyncio.Task[None] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(42))

    @property
    def cid(self) -> ClusterId:
        return ClusterId(self.cluster.id)

    async def start(self, *, fence: Fence | None = None, inactivity: float = 30.0,
                    watch_timeout: int = 30) -> ClusterReconciler:
        client = ClusterClient.from_url(self.sim.url_for(self.cluster.id), cluster_id=self.cid)
        self.source = KubeSource(client, kind=PODS, biz_id=self.biz_id, page_size=50,
                                 watch_timeout=watch_timeout, inactivity=inactivity,
                                 metrics=self.metrics, owns_client=True)
        self.rec = ClusterReconciler(
            cluster=self.cid, kind="pods", source=self.source, store=self.store.table(PODS),
            settings=self.settings, metrics=self.metrics, fence=fence,
        )
        self.supervisor = ClusterSupervisor(
            cluster=self.cid, reconcilers=[self.rec], leases=self.store if fence else None,
            fence=fence, settings=self.settings, metrics=self.metrics)
        self.task = asyncio.create_task(self.supervisor.run())
        async with asyncio.timeout(TIMEOUT):
            await self.rec.wait_synced()
        return self.rec

    async def stop(self) -> None:
        if self.supervisor is not None and self.task is not None:
            self.supervisor.stop()
            async with asyncio.timeout(TIMEOUT):
                await self.task
        if self.source is not None:
            await self.source.aclose()
        self.rec = self.task = self.source = self.supervisor = None

    async def settle(self) -> None:
        """Wait until everything the cluster did so far is written."""
        assert self.rec is not None
        async with asyncio.timeout(TIMEOUT):
            await self.rec.caught_up(self.cluster.resource_version)

    async def assert_converged(self) -> None:
        """Active rows = live pods, with the pods' versions and checksums; deleted rows are
        tombstones; no duplicates by construction of the primary key."""
        rows = await self.store.table(PODS).rows(self.cid)
        active = {r["uid"]: (r["resource_version"], r["checksum"]) for r in rows
                  if r["state"] == "Active"}
        truth = {}
        for pod in self.cluster.pods():
            record = project(pod, biz_id=self.biz_id, observed=_EPOCH)
            truth[record.key] = (record.version, record.checksum)
        missing = truth.keys() - active.keys()
        extra = active.keys() - truth.keys()
        # a row's version may trail its pod's when only status changed since (not written)
        differ = {k for k in truth.keys() & active.keys()
                  if truth[k][1] != active[k][1] or truth[k][0] < active[k][0]}
        assert not (missing or extra or differ), (
            f"missing {len(missing)}, extra {len(extra)}, differ {len(differ)}")
        assert not audit_regressions(self.dsn), "a stored version went backwards"

    async def populate(self, pods: int) -> None:
        await populate(self.cluster, pods=pods, namespaces=3, rng=self.rng)

    def pod(self, n: int = 0) -> dict[str, Any]:
        return self.cluster.pods()[n]

    async def rows(self) -> list[dict[str, Any]]:
        return await self.store.table(PODS).rows(self.cid)

    def sample(self, name: str, labels: dict[str, str]) -> float:
        if name not in CLUSTER_ONLY and "cluster" in labels:
            labels = {"kind": "pods", **labels}
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


async def make_store(dsn: str) -> CmdbStore:
    store = await open_store(dsn)
    if dsn.startswith("mysql"):
        install_audit(dsn)
    return store

