"""TEST-MATRIX row 16: instances whose wall clocks disagree by ten minutes hand clusters
to each other, under churn.

The skew is real: the instance runs under libfaketime (Debian `faketime`, preloaded into
the subprocess with a constant offset), so every wall-clock reading in it -- the
observation times it stores as `query_at`, its log times -- is ten minutes ahead or
behind; the database server, ZooKeeper and the other instance keep real time. (A jump
while running cannot be made this way: libfaketime's monotonic clock either jumps with
the wall clock, which no real clock step does, or breaks `time.sleep`; a constant offset
that differs between instances is what a badly synchronised fleet looks like.)

What must hold: the table converges as if all clocks agreed (C, U, M), because rows are
ordered by resourceVersion, never by observation time. The proof that ordering ignored
the clocks: a second audit trigger records `query_at`, and the history shows rows whose
version went up while their `query_at` went back by minutes -- writes a time-ordered rule
would have refused.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from faults_support import CLUSTERS
from integration.harness import admin
from scaleout_oracles import converge, now
from scaleout_support import Fleet, SimProcess, owners
from zkserver import ZkServer

from synchronizer.coordination import assign

SKEW = 600
"""Seconds of clock skew (TEST-MATRIX: plus or minus ten minutes)."""
EVIDENT = SKEW // 2
"""A stored `query_at` this far from the server's clock can only come from a skewed
instance (the test runs for well under a minute)."""
CLOCK_AUDIT = [
    "CREATE TABLE pods_clock_audit (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
    " uid VARCHAR(64), resource_version BIGINT, query_at DATETIME(6))",
    "CREATE TRIGGER pods_clock_audit_insert AFTER INSERT ON pods FOR EACH ROW"
    " INSERT INTO pods_clock_audit (uid, resource_version, query_at)"
    " VALUES (NEW.uid, NEW.resource_version, NEW.query_at)",
    "CREATE TRIGGER pods_clock_audit_update AFTER UPDATE ON pods FOR EACH ROW"
    " INSERT INTO pods_clock_audit (uid, resource_version, query_at)"
    " SELECT NEW.uid, NEW.resource_version, NEW.query_at FROM DUAL"
    " WHERE NEW.resource_version <> OLD.resource_version",
]


def faketime(offset: int) -> dict[str, str]:
    """The environment that runs a process with its wall clock `offset` seconds off."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    if not found:
        raise RuntimeError("libfaketime is missing: install Debian `faketime` "
                           "(scripts/ensure-services.sh does)")
    return {"LD_PRELOAD": str(found[0]), "FAKETIME": f"{offset:+d}s"}


def scalar(dsn: str, sql: str) -> object:
    """The first column of the first row of a query."""
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


async def until_stored(dsn: str, cluster: str, condition: str, *, timeout: float = 30.0
                       ) -> None:
    """Wait until a row of `cluster` satisfies `condition` (SQL). The writer is another
    process: a bounded poll of the table."""
    sql = f"SELECT COUNT(*) FROM pods WHERE cluster_id = '{cluster}' AND {condition}"
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(scalar, dsn, sql):
            await asyncio.sleep(0.2)  # another process writes: bounded poll


def time_went_back(dsn: str) -> int:
    """How many times a row's version went up while its `query_at` went back more than
    EVIDENT seconds (consecutive entries of the clock audit, per uid)."""
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT uid, resource_version, query_at FROM pods_clock_audit"
                        " ORDER BY id")
            history = cur.fetchall()
    finally:
        conn.close()
    last: dict[str, tuple[int, object]] = {}
    count = 0
    for uid, version, query_at in history:
        if uid in last:
            before_version, before_at = last[uid]
            if version > before_version and \
                    (before_at - query_at).total_seconds() > EVIDENT:  # type: ignore[operator]
                count += 1
        last[uid] = (version, query_at)
    return count


async def test_row16_clock_skew_between_instances_does_not_change_the_outcome(
    cmdb: str, fleets: Callable[..., Fleet], sim: SimProcess, zk_server: ZkServer,
) -> None:
    conn = admin(cmdb)
    with conn.cursor() as cur:
        for statement in CLOCK_AUDIT:
            cur.execute(statement)
    conn.close()
    fleet = fleets(cmdb, zk=zk_server)
    await fleet.add(0)
    await fleet.settled()
    await sim.churn_all(CLUSTERS, events=None, rate=20.0, seed=16)
    # the ring gives these clusters to sync-1 when it joins sync-0
    moving = sorted(c for c, o in assign(CLUSTERS, ["sync-0", "sync-1"]).items()
                    if o == "sync-1")
    assert moving, "the plan must hand the skewed instance something"
    x = moving[0]

    # normal -> ahead: sync-1 runs ten minutes ahead and takes its share
    ahead = await fleet.add(1, env=faketime(+SKEW))
    docs = await fleet.settled()
    assert sorted(c for c, o in owners(docs).items() if o == ["sync-1"]) == moving
    await until_stored(cmdb, x, f"query_at > UTC_TIMESTAMP(6) + INTERVAL {EVIDENT} SECOND")

    # ahead -> normal: it leaves, its share goes back to sync-0
    ahead.signal(signal.SIGTERM)
    assert await ahead.wait_exit() == 0
    last = await asyncio.to_thread(
        scalar, cmdb, f"SELECT MAX(resource_version) FROM pods WHERE cluster_id = '{x}'")
    docs = await fleet.settled(["sync-0"])
    assert sorted(owners(docs)) == CLUSTERS
    await until_stored(cmdb, x, f"resource_version > {last} AND query_at"
                                " > UTC_TIMESTAMP(6) - INTERVAL 60 SECOND AND query_at"
                                " < UTC_TIMESTAMP(6) + INTERVAL 60 SECOND")

    # normal -> behind: the same id comes back ten minutes behind and takes its share again
    await fleet.add(1, env=faketime(-SKEW))
    docs = await fleet.settled()
    assert sorted(c for c, o in owners(docs).items() if o == ["sync-1"]) == moving
    await until_stored(cmdb, x, f"query_at < UTC_TIMESTAMP(6) - INTERVAL {EVIDENT} SECOND")

    started = now()
    await sim.stop_churn(CLUSTERS)
    await converge(sim, cmdb, CLUSTERS)  # C, U, and M (versions never went back)
    went_back = await asyncio.to_thread(time_went_back, cmdb)
    assert went_back >= 1, "no write was ever accepted with an older clock"
    print(f"row 16: three handoffs across +-{SKEW}s of skew; {went_back} row writes accepted"
          f" with a query_at minutes older than the row's; converged"
          f" {now() - started:.1f}s after the churn stopped")
