"""Every kind's table through the real stores: the shared rule, the discriminated workloads
table, repair of rows edited behind our back, tombstone retention, and the v1 → v2
migration with data in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncmy
import pytest
from cmdb_support import BASE, CLUSTER, at

from reconciler import TOMBSTONE, ApplyResult, ObjectKey, Record, State
from synchronizer.cmdb import open_store
from synchronizer.cmdb.migrations import V1
from synchronizer.cmdb.schema import _mysql_op, _sqlite_op
from synchronizer.kinds import KINDS, NODES, PODS, WORKLOADS
from synchronizer.kinds.descriptor import row_checksum
from synchronizer.kinds.workloads import DEPLOYMENT, JOB


def record(of: Any, key: str, version: int, **fields: Any) -> Record:
    base = {c.name: c.default for c in of.stored}
    if of.discriminator:
        base[of.discriminator] = of.resources[0].kind
    base.update(fields)
    return Record(key=ObjectKey(key), version=version,
                  checksum=row_checksum(base, of.stored), query_at=at(version), fields=base)


async def sql(store: Any, statement: str) -> None:
    """Run one statement behind the store's back (an operator's hand edit)."""
    if hasattr(store, "conn"):
        await store.conn.execute("edit", statement)
    else:
        await store._writer.call(lambda conn: conn.execute(statement))


@pytest.fixture
async def cmdb(store_dsn: str) -> Any:
    store = await open_store(store_dsn)
    yield store
    await store.close()


@pytest.mark.parametrize("name", list(KINDS))
async def test_every_kind_follows_the_rule(cmdb, name):
    kind = KINDS[name]
    table = cmdb.table(kind, kind.resources[0])
    first = record(kind, "u1", 5, name="a")
    assert await table.apply(CLUSTER, [first]) == ApplyResult(written=1)
    assert await table.apply(CLUSTER, [record(kind, "u1", 4, name="older")]) == ApplyResult(
        unchanged=1)
    newer = record(kind, "u1", 9, name="b")
    assert await table.apply(CLUSTER, [newer]) == ApplyResult(written=1)
    gone = Record(key=ObjectKey("u1"), version=12, checksum=TOMBSTONE, query_at=at(12),
                  state=State.DELETED)
    assert await table.apply(CLUSTER, [gone]) == ApplyResult(written=1)
    (row,) = await table.rows(CLUSTER)
    assert (row["name"], row["state"], row["resource_version"]) == ("b", "Deleted", 12)
    assert len(await table.load_index(CLUSTER)) == 0


async def test_a_fleets_active_rows_are_counted_per_cluster_in_one_call(cmdb, monkeypatch):
    """`/status` and the rows gauge count every cluster of a kind in a statement or a few
    (chunked: the chunk is shrunk here to see the seams), tombstones and the other
    resources of a shared table not counted, 0 for a cluster with no rows."""
    monkeypatch.setattr(f"{type(cmdb).__module__}.COUNT_CHUNK", 2)
    pods = cmdb.table(PODS)
    clusters = [f"c{n}" for n in range(5)]
    for n, cluster in enumerate(clusters[:4]):
        await pods.apply(cluster, [record(PODS, f"{cluster}-{i}", 3, name=f"p{i}")
                                   for i in range(n + 1)])
    gone = Record(key=ObjectKey("c3-0"), version=9, checksum=TOMBSTONE, query_at=at(9),
                  state=State.DELETED)
    await pods.apply("c3", [gone])
    assert await pods.count_active_many(clusters) == {"c0": 1, "c1": 2, "c2": 3, "c3": 3,
                                                       "c4": 0}
    deployments, jobs = cmdb.table(WORKLOADS, DEPLOYMENT), cmdb.table(WORKLOADS, JOB)
    await deployments.apply("c0", [record(WORKLOADS, "d1", 3, kind="Deployment",
                                          namespace="ns", name="web", replicas=3)])
    await jobs.apply("c1", [record(WORKLOADS, "j1", 4, kind="Job", namespace="ns",
                                   name="once", replicas=None)])
    assert await jobs.count_active_many(clusters[:3]) == {"c0": 0, "c1": 1, "c2": 0}
    assert await cmdb.table(WORKLOADS).count_active_many(["c0", "c1"]) == {"c0": 1, "c1": 1}


async def test_workload_resources_share_one_table_but_not_an_index(cmdb):
    deployments = cmdb.table(WORKLOADS, DEPLOYMENT)
    jobs = cmdb.table(WORKLOADS, JOB)
    await deployments.apply(CLUSTER, [record(WORKLOADS, "d1", 3, kind="Deployment",
                                             namespace="ns", name="web", replicas=3)])
    await jobs.apply(CLUSTER, [record(WORKLOADS, "j1", 4, kind="Job", namespace="ns",
                                      name="once", replicas=None)])
    assert set((await deployments.load_index(CLUSTER)).versions) == {"d1"}
    assert set((await jobs.load_index(CLUSTER)).versions) == {"j1"}
    assert await jobs.count_active(CLUSTER) == 1
    (job,) = await jobs.rows(CLUSTER)
    assert job["replicas"] is None and job["kind"] == "Job"
    # a bare tombstone (a full sync knows only the key) still lands in its resource's rows
    bare = Record(key=ObjectKey("j2"), version=5, checksum=TOMBSTONE, query_at=at(5),
                  state=State.DELETED)
    await jobs.apply(CLUSTER, [bare])
    assert {r["uid"] for r in await jobs.rows(CLUSTER)} == {"j1", "j2"}


async def test_a_row_edited_behind_our_back_is_seen_and_repaired(cmdb):
    nodes = cmdb.table(NODES)
    truth = record(NODES, "n1", 7, name="node-1", internal_ip="10.0.0.1", ready="True")
    await nodes.apply(CLUSTER, [truth])
    assert (await nodes.load_index(CLUSTER)).checksums["n1"] == truth.checksum
    await sql(cmdb, "UPDATE nodes SET internal_ip = '6.6.6.6' WHERE uid = 'n1'")
    # the checksum column was left alone, but the row no longer hashes to it
    assert (await nodes.load_index(CLUSTER)).checksums["n1"] == ""
    # a watch event at the same version is not a repair...
    assert await nodes.apply(CLUSTER, [truth]) == ApplyResult(unchanged=1)
    # ...a full sync's record is, even at an equal version
    from dataclasses import replace
    assert await nodes.apply(CLUSTER, [replace(truth, repair=True)]) == ApplyResult(written=1)
    (row,) = await nodes.rows(CLUSTER)
    assert row["internal_ip"] == "10.0.0.1"
    assert (await nodes.load_index(CLUSTER)).checksums["n1"] == truth.checksum
    assert await nodes.apply(CLUSTER, [replace(truth, repair=True)]) == ApplyResult(
        unchanged=1)


async def test_tombstone_retention_removes_only_old_tombstones(cmdb):
    pods = cmdb.table(PODS)
    old = Record(key=ObjectKey("old"), version=3, checksum=TOMBSTONE, query_at=BASE,
                 state=State.DELETED)
    recent = Record(key=ObjectKey("new"), version=4, checksum=TOMBSTONE,
                    query_at=BASE + timedelta(days=2), state=State.DELETED)
    await pods.apply(CLUSTER, [old, recent, record(PODS, "live", 5, name="p",
                                                   namespace="ns")])
    removed = await cmdb.purge_tombstones(PODS, CLUSTER, BASE + timedelta(days=1), 100)
    assert removed == 1
    assert {r["uid"] for r in await pods.rows(CLUSTER)} == {"new", "live"}


V1_POD = {"cluster_id": "c1", "uid": "u-1", "namespace": "ns", "name": "p", "biz_id": 2,
          "set_name": "s", "module_name": "m", "node_name": "n", "host_ip": "1.1.1.1",
          "pod_ip": "2.2.2.2", "phase": "Running", "labels": "{}", "containers": "[]",
          "resource_version": 41, "checksum": "v1sum", "state": "Active"}


def _mysql_args(dsn: str) -> dict[str, Any]:
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    return dict(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                password=u.password or "", db=u.path.lstrip("/"))


async def _make_v1_mysql(dsn: str) -> None:
    conn = await asyncmy.connect(**_mysql_args(dsn), autocommit=True)
    async with conn.cursor() as cur:
        for op in V1.ops:
            await _mysql_op(cur, op)
        await cur.execute("CREATE TABLE schema_version (version INT NOT NULL PRIMARY KEY,"
                          " why VARCHAR(255) NOT NULL, applied_at DATETIME(6) NOT NULL)")
        await cur.execute("INSERT INTO schema_version VALUES (1, 'v1', NOW(6))")
        columns = ", ".join(V1_POD)
        await cur.execute(f"INSERT INTO pods ({columns}, query_at) VALUES"
                          f" ({', '.join(['%s'] * len(V1_POD))}, NOW(6))", tuple(V1_POD.values()))
    conn.close()


def _make_v1_sqlite(path: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    for op in V1.ops:
        _sqlite_op(conn, op, " STRICT")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,"
                 " why TEXT NOT NULL, applied_at TEXT NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1, 'v1', '2025-01-01 00:00:00.000000')")
    conn.execute(f"INSERT INTO pods ({', '.join(V1_POD)}, query_at) VALUES"
                 f" ({', '.join('?' * len(V1_POD))}, '2025-01-01 00:00:00.000000')",
                 tuple(V1_POD.values()))
    conn.close()


async def test_a_v1_database_is_migrated_in_place_with_its_rows(store_dsn):
    if store_dsn.startswith("sqlite"):
        _make_v1_sqlite(store_dsn.removeprefix("sqlite:///"))
    else:
        await _make_v1_mysql(store_dsn)
    store = await open_store(store_dsn)
    try:
        (row,) = await store.table(PODS).rows("c1")
        assert {k: row[k] for k in V1_POD} == V1_POD  # every v1 value survives
        assert (row["workload_kind"], row["workload_name"], row["truncated"]) == ("", "", "")
        # the v1 checksum is not ours: the first full sync sees it differs and rewrites
        index = await store.table(PODS).load_index("c1")
        assert index.versions["u-1"] == 41 and index.checksums["u-1"] != V1_POD["checksum"]
        for kind in KINDS.values():
            assert await store.table(kind, kind.resources[0]).rows("c1") in ([], [row])
    finally:
        await store.close()
    again = await open_store(store_dsn)  # a second start finds nothing to do
    await again.close()


async def _explain_load(store: Any, kind: Any) -> str:
    """MariaDB's EXPLAIN "Extra" of the index load of `kind` (discriminated when it has one)."""
    from synchronizer.cmdb import mysql_sql

    statement = mysql_sql.load_index(kind, discriminated=bool(kind.discriminator))
    args = ("c1", kind.resources[0].kind) if kind.discriminator else ("c1",)
    ((*_, extra),) = await store.conn.query("explain", f"EXPLAIN {statement}", args)
    return str(extra)


async def test_the_index_load_reads_an_index_alone_fresh_or_migrated(mysql_dsn):
    """The full sync's index load is served by `tables.load_key` without touching whole
    rows ("Using index"), on tables created today and on a v1 `pods` table migrated."""
    store = await open_store(mysql_dsn)
    try:
        for kind in KINDS.values():
            assert "Using index" in await _explain_load(store, kind), kind.name
        (tables,) = zip(*await store.conn.query("tables", "SHOW TABLES"), strict=True)
        await store.conn.execute("drop", f"DROP TABLE {', '.join(tables)}")
    finally:
        await store.close()
    await _make_v1_mysql(mysql_dsn)
    store = await open_store(mysql_dsn)
    try:
        assert "Using index" in await _explain_load(store, PODS)
        index = await store.table(PODS).load_index("c1")
        assert index.versions == {"u-1": 41}
    finally:
        await store.close()


async def test_dead_letters_name_the_kind(cmdb):
    nodes = cmdb.table(NODES)
    bad = record(NODES, "n1", 3, name="n" * 400)  # over the column's limit
    result = await nodes.apply(CLUSTER, [bad, record(NODES, "n2", 3, name="ok")])
    assert result.written == 1 and [k for k, _ in result.rejected] == ["n1"]
    (letter,) = await cmdb.dead_letters(CLUSTER)
    assert (letter["kind"], letter["uid"]) == ("nodes", "n1")
    assert datetime.now(UTC) - letter["at"] < timedelta(hours=1)


async def test_one_transaction_for_many_clusters_and_kinds_each_fenced_alone(cmdb):
    """The writer's batches span clusters (issue "Fleet scale"): each group's result is
    exact, and a cluster whose lease another owner holds is refused alone."""
    from reconciler import Fence, Fenced, WriteGroup

    mine, theirs = Fence(owner="me", epoch=3), Fence(owner="me", epoch=2)
    assert await cmdb.acquire("a", mine, 30)
    assert await cmdb.acquire("b", Fence(owner="other", epoch=9), 30)
    assert await cmdb.acquire("c", mine, 30)
    pods, nodes = cmdb.table(PODS), cmdb.table(NODES)
    await pods.apply("a", [record(PODS, "a-p0", 1, name="old")])
    groups = [
        WriteGroup("a", pods, mine, [record(PODS, "a-p0", 2, name="new"),
                                     record(PODS, "a-p1", 2, name="x")]),
        WriteGroup("a", nodes, mine, [record(NODES, "a-n0", 2, name="n")]),
        WriteGroup("b", pods, theirs, [record(PODS, "b-p0", 2, name="y")]),
        WriteGroup("c", pods, mine, [record(PODS, "a-p0", 1, name="old")]),  # another cluster
        WriteGroup("c", nodes, None, [record(NODES, "c-n0", 5, name="m")]),
    ]
    out = await cmdb.apply_groups(groups)
    assert out[0] == ApplyResult(written=2) and out[1] == ApplyResult(written=1)
    assert isinstance(out[2], Fenced) and "other epoch 9" in str(out[2])
    assert out[3] == ApplyResult(written=1) and out[4] == ApplyResult(written=1)
    assert await pods.rows("b") == []
    assert {r["name"] for r in await pods.rows("a")} == {"new", "x"}
    # a row the database refuses: every group falls back, the row is dead-lettered alone
    bad = [WriteGroup("a", nodes, mine, [record(NODES, "a-n1", 3, name="z" * 300)]),
           WriteGroup("c", pods, mine, [record(PODS, "c-p9", 3, name="fine")])]
    out = await cmdb.apply_groups(bad)
    assert [k for k, _ in out[0].rejected] == ["a-n1"] and out[1] == ApplyResult(written=1)


async def test_groups_sharing_a_table_are_counted_each_on_its_own(cmdb):
    """Groups bound for one table go in one statement: each group's written / unchanged
    counts stay its own, also for two resources of the workloads table in one cluster,
    for two tables of one cluster, for a newer version with the same content, a stale
    one, and a repair record."""
    from dataclasses import replace

    from reconciler import WriteGroup

    deployments, jobs = cmdb.table(WORKLOADS, DEPLOYMENT), cmdb.table(WORKLOADS, JOB)
    pods = cmdb.table(PODS)

    def dep(key: str, version: int, **f: Any) -> Record:
        return record(WORKLOADS, key, version, kind="Deployment", namespace="ns", **f)

    def job(key: str, version: int, **f: Any) -> Record:
        return record(WORKLOADS, key, version, kind="Job", namespace="ns", replicas=None, **f)

    await deployments.apply("a", [dep("d1", 1, name="web"), dep("d2", 1, name="api")])
    await jobs.apply("a", [job("j1", 1, name="once")])
    await pods.apply("b", [record(PODS, "p1", 1, name="p")])
    nodes = cmdb.table(NODES)
    await nodes.apply("b", [record(NODES, "n1", 1, name="n")])
    groups = [
        # d1 changed, d2 newer but the same content (unchanged), d3 new
        WriteGroup("a", deployments, None, [dep("d1", 2, name="web2"), dep("d2", 2, name="api"),
                                            dep("d3", 2, name="new")]),
        # j1 stale (unchanged), j2 new
        WriteGroup("a", jobs, None, [job("j1", 0, name="older"), job("j2", 2, name="x")]),
        # p1 equal version and content, as a full sync's repair record: unchanged
        WriteGroup("b", pods, None, [replace(record(PODS, "p1", 1, name="p"), repair=True)]),
        WriteGroup("c", pods, None, [record(PODS, "p1", 1, name="other cluster")]),
        # another table of cluster b in the same transaction: its counts stay its own
        WriteGroup("b", nodes, None, [record(NODES, "n1", 2, name="n2")]),
    ]
    out = await cmdb.apply_groups(groups)
    assert out == [ApplyResult(written=2, unchanged=1), ApplyResult(written=1, unchanged=1),
                   ApplyResult(written=0, unchanged=1), ApplyResult(written=1),
                   ApplyResult(written=1)]
    assert {r["uid"]: r["name"] for r in await deployments.rows("a")} == {
        "d1": "web2", "d2": "api", "d3": "new"}
    assert {r["uid"]: r["name"] for r in await jobs.rows("a")} == {"j1": "once", "j2": "x"}


async def test_a_version_reset_is_fenced_keeps_content_and_lets_lower_versions_in(cmdb):
    """After a cluster's versions went backwards (rebuilt, etcd restored): every row of the
    view (this resource only) at version 0, Active rows with an empty checksum (so the
    next full sync rewrites them), tombstones kept; lower versions then apply."""
    from reconciler import Fence, Fenced

    deploys = cmdb.table(WORKLOADS, DEPLOYMENT)
    jobs = cmdb.table(WORKLOADS, JOB)
    owner, intruder = Fence(owner="a", epoch=1), Fence(owner="b", epoch=1)
    assert await cmdb.acquire(CLUSTER, owner, 30)
    await deploys.apply(CLUSTER, [record(WORKLOADS, "d1", 900, name="d1"),
                                  record(WORKLOADS, "d2", 950, name="d2")], fence=owner)
    await deploys.apply(CLUSTER, [Record(key=ObjectKey("d2"), version=990,
                                         checksum=TOMBSTONE, query_at=at(990),
                                         state=State.DELETED)], fence=owner)
    job = record(WORKLOADS, "j1", 980, name="j1", kind=JOB.kind)
    await jobs.apply(CLUSTER, [job], fence=owner)
    with pytest.raises(Fenced):
        await deploys.reset_versions(CLUSTER, fence=intruder)
    assert {r["uid"]: r["resource_version"] for r in await deploys.rows(CLUSTER)} == {
        "d1": 900, "d2": 990}
    assert await deploys.reset_versions(CLUSTER, fence=owner) == 2
    after = {r["uid"]: r for r in await deploys.rows(CLUSTER)}
    assert {u: r["resource_version"] for u, r in after.items()} == {"d1": 0, "d2": 0}
    assert after["d1"]["name"] == "d1" and after["d1"]["state"] == "Active"
    assert after["d2"]["state"] == "Deleted" and after["d2"]["checksum"] == TOMBSTONE
    assert (await deploys.load_index(CLUSTER)).checksums[ObjectKey("d1")] == ""
    (kept,) = await jobs.rows(CLUSTER)  # another resource's view is not touched
    assert kept["resource_version"] == 980
    # The new incarnation's versions, far below the old ones, now apply.
    assert await deploys.apply(CLUSTER, [record(WORKLOADS, "d1", 3, name="d1"),
                                         record(WORKLOADS, "d2", 4, name="d2")],
                               fence=owner) == ApplyResult(written=2)
