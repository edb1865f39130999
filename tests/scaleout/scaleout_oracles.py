"""Oracles of the scale-out suite: the CMDB seen directly and ZooKeeper seen from outside.

- Rows: active rows versus the simulator's truth (C, N), duplicate keys (U), the audit
  trigger of tests/integration/harness.py (M); `converge` waits for C(T) and checks all.
- Leases: the lease table; `steal_lease` writes what another owner's takeover writes.
- Sessions: per-instance database users, and the open write transactions of one of them
  (what a process paused in the middle of a write leaves on the server).
- ZooKeeper: `Observer` follows the assignment znode and reads the member nodes'
  sessions; `epochs_only_grow` checks the fencing tokens along its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from integration.harness import admin, audit_regressions, install_audit

from synchronizer.cmdb import open_store
from synchronizer.coordination import Assignment
from synchronizer.coordination.zk import ZkSession
from synchronizer.kinds import Projection
from synchronizer.kinds.pods import POD, project_pod

if TYPE_CHECKING:
    from scaleout_support import SimProcess

GUARD = 60.0
"""Upper bound of any single wait."""
SETTLE = 30.0
"""C(T): how long the table may take to equal the truth once the changes stopped."""


def now() -> float:
    """The test loop's clock (monotonic)."""
    return asyncio.get_running_loop().time()



async def prepare_cmdb(dsn: str) -> str:
    """Create the tables in the (empty) database of `dsn` as the product does, and install
    the audit trigger; returns `dsn`."""
    store = await open_store(dsn)
    await store.close()
    await asyncio.to_thread(install_audit, dsn)
    return dsn


def _select(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def active_rows(dsn: str) -> dict[str, dict[str, tuple[int, str, int]]]:
    """{cluster: {uid: (resource_version, checksum, biz_id)}} of the active rows."""
    out: dict[str, dict[str, tuple[int, str, int]]] = {}
    for cluster, uid, version, checksum, biz_id in _select(
            dsn, "SELECT cluster_id, uid, resource_version, checksum, biz_id FROM pods"
                 " WHERE state = 'Active'"):
        out.setdefault(cluster, {})[uid] = (int(version), checksum, int(biz_id))
    return out


def duplicate_keys(dsn: str) -> int:
    """(cluster_id, uid) pairs stored more than once (U; the primary key forbids it)."""
    return len(_select(dsn, "SELECT cluster_id, uid FROM pods GROUP BY cluster_id, uid"
                            " HAVING COUNT(*) > 1"))


def lease_rows(dsn: str) -> dict[str, tuple[str, int]]:
    """{cluster: (owner, epoch)} of the lease table."""
    return {c: (o, int(e)) for c, o, e in _select(dsn, "SELECT cluster_id, owner, epoch"
                                                       " FROM leases")}


def steal_lease(dsn: str, cluster: str, *, owner: str, epoch: int, seconds: float) -> None:
    """Write `cluster`'s lease row as another owner's takeover would (for `seconds`)."""
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO leases (cluster_id, owner, epoch, expires_at) VALUES"
                " (%s, %s, %s, UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND)"
                " ON DUPLICATE KEY UPDATE owner = VALUES(owner), epoch = VALUES(epoch),"
                " expires_at = VALUES(expires_at)",
                (cluster, owner, epoch, int(seconds * 1_000_000)))
    finally:
        conn.close()


def create_user(dsn: str, user: str, *, via: str | None = None) -> str:
    """A database user with every right on the test database (but no global right such
    as SUPER: `read_only` applies to it); the DSN that uses it, through the host and
    port of `via` if given (a fault proxy in front of the server)."""
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    where = urlsplit(via or dsn)
    database = u.path.lstrip("/")
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY 'pw'")
                cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'")
    finally:
        conn.close()
    return f"mysql://{user}:pw@{where.hostname}:{where.port or 3306}/{database}"


def drop_user(dsn: str, user: str) -> None:
    """Drop a user made by `create_user`."""
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    finally:
        conn.close()


def locking_transactions(dsn: str, user: str) -> set[tuple[int, str]]:
    """Open transactions of `user`'s sessions that hold row locks, as (connection id,
    start time): what a process paused in the middle of a write leaves on the server."""
    return {(int(t), str(s)) for t, s in _select(
        dsn, "SELECT t.trx_mysql_thread_id, t.trx_started FROM information_schema.INNODB_TRX t"
        " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
        f" WHERE p.USER = '{user}' AND t.trx_rows_locked > 0")}


def _expected(pod: dict[str, Any], biz_id: int) -> tuple[str, int, str]:
    """(uid, version, checksum) the product's own projection makes of a live pod."""
    record = project_pod(orjson.dumps(pod), Projection(resource=POD, biz_id=biz_id,
                                                       observed=datetime.now(UTC)))
    return record.key, record.version, record.checksum


async def table_vs_truth(sim: SimProcess, dsn: str, clusters: Iterable[str]) -> str | None:
    """None if every cluster's active rows are exactly its live pods, with their content.

    A row's version may trail its pod's: a newer version with the same stored content
    (status-only noise) is never written (docs/designs/006-no-version-only-writes.md)."""
    rows = await asyncio.to_thread(active_rows, dsn)
    for cluster in clusters:
        stored = rows.get(cluster, {})
        biz = next(iter(stored.values()))[2] if stored else 0
        truth = {uid: (version, checksum) for uid, version, checksum in
                 (_expected(p, biz) for p in await sim.pods(cluster))}
        missing = truth.keys() - stored.keys()
        extra = stored.keys() - truth.keys()
        differ = [u for u in truth.keys() & stored.keys()
                  if stored[u][1] != truth[u][1] or stored[u][0] > truth[u][0]]
        if missing or extra or differ:
            return (f"{cluster}: {len(missing)} missing, {len(extra)} extra,"
                    f" {len(differ)} with other content")
    return None


async def converge(sim: SimProcess, dsn: str, clusters: Iterable[str], *,
                   within: float = SETTLE) -> float:
    """C(T): wait until the table equals the truth (no more changes are being made);
    then U and M. Returns the seconds it took."""
    chosen = list(clusters)
    start = now()
    why: str | None = None
    try:
        async with asyncio.timeout(within):
            while (why := await table_vs_truth(sim, dsn, chosen)) is not None:
                await asyncio.sleep(0.2)  # the writers are other processes: bounded poll
    except TimeoutError:
        raise AssertionError(f"table != truth after {within}s: {why}") from None
    assert await asyncio.to_thread(duplicate_keys, dsn) == 0, "U: duplicate rows"
    regressions = await asyncio.to_thread(audit_regressions, dsn)
    assert not regressions, f"M: stored versions went backwards: {regressions[:5]}"
    return now() - start


def dumps(obj: Any) -> str:
    """Compact JSON for assertion messages."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


# -- ZooKeeper, as an outside observer ----------------------------------------------------------


class Observer:
    """A ZooKeeper session of the test's own: the assignment znode's history (every
    version it read; a watch may skip versions, never reorder them) and the members'
    session ids."""

    def __init__(self, hosts: str, root: str) -> None:
        self.session = ZkSession(hosts, session_timeout=10.0)
        self.root = root
        self.history: list[Assignment] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Observer:
        """Connect and start following the assignment znode."""
        await self.session.start()
        async with asyncio.timeout(GUARD):
            await self.session.wait_connected()
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        async for data, _stat in self.session.watch_data(f"{self.root}/assignment"):
            if data:
                self.history.append(Assignment.decode(data))

    async def member_sessions(self) -> dict[str, int]:
        """{member id: the session id owning its ephemeral node}."""
        client = self.session.client
        path = f"{self.root}/members"
        out = {}
        for child in await self.session.call(client.get_children_async, path):
            _, stat = await self.session.call(client.get_async, f"{path}/{child}")
            out[child] = int(stat.ephemeralOwner)
        return out

    async def close(self) -> None:
        """Stop following and close the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.session.close()


def epochs_only_grow(history: list[Assignment]) -> str | None:
    """None if, along the published versions, a cluster's epoch never decreases and
    strictly increases whenever its owner changes (never two valid tokens for one
    cluster: the store's lease takes the higher one). Otherwise the first violation."""
    for before, after in itertools.pairwise(history):
        if after.version <= before.version:
            return f"version {after.version} after {before.version}"
        for cluster, owner in after.owners.items():
            if cluster not in before.owners:
                continue
            old, new = before.epochs[cluster], after.epochs[cluster]
            if new < old or (owner != before.owners[cluster] and new <= old):
                return (f"{cluster}: v{before.version} {before.owners[cluster]}@{old} ->"
                        f" v{after.version} {owner}@{new}")
    return None
