"""Measure the CMDB write and index-read paths with each async MySQL driver.

Why: the store must pick one driver, and DESIGN §6 claims asyncmy reads the index about 5x
faster than aiomysql while writes cost the same. This runs the real `MySQLStore` code
(`mysql+asyncmy://` and `mysql+aiomysql://`) against a real server, so the figures include
the conditional upsert, the session counters and the driver's escaping and row parsing.

For each driver, on a fresh database: insert N pods of about 1.3 KB in batches of B rows
(one transaction each, one writer), re-apply the same batches (nothing changes: the rule's
cost alone), update every row (a full-column write), then load the index of N rows five
times. Reported: rows/s (wall), client CPU seconds, the median index load time, and the
driver's share of it (the same query with rows left as tuples).
Variants: asyncmy (the store's default: binary protocol through asyncmy's prepared
statement cache), asyncmy-text (the same driver, text protocol) and aiomysql (text); and
the staged formulation of the merge rule (docs/designs/007-mysql8.md, what MySQL 8 gets)
forced on the same server with `upsert=staged`: asyncmy-staged, aiomysql-staged.

    .venv/bin/python bench/bench_drivers.py                  # 100k rows, B = 500 and 1000
    .venv/bin/python bench/bench_drivers.py --rows 20000 --batch 500
    .venv/bin/python bench/bench_drivers.py --driver asyncmy --driver asyncmy-staged
    BKCMDB_TEST_MYSQL=mysql://root@127.0.0.1:3306 .venv/bin/python bench/bench_drivers.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
import pymysql

from reconciler import ObjectKey, Record
from synchronizer.cmdb import MySQLStore, mysql_conn
from synchronizer.kinds import PODS
from synchronizer.kinds.descriptor import row_checksum

VARIANTS = {
    "asyncmy": ("asyncmy", mysql_conn.STATEMENT_CACHE, "variables"),
    "asyncmy-text": ("asyncmy", 0, "variables"),
    "aiomysql": ("aiomysql", 0, "variables"),
    "asyncmy-staged": ("asyncmy", mysql_conn.STATEMENT_CACHE, "staged"),
    "aiomysql-staged": ("aiomysql", 0, "staged"),
}
"""Bench name -> (driver, prepared-statement cache, formulation). asyncmy-text is asyncmy
with its statement cache off, i.e. the text protocol with client-side escaping, like
aiomysql."""

CLUSTER = "bench"
INDEX_SQL = "SELECT uid, resource_version, checksum FROM pods WHERE cluster_id = %s"


def pods(n: int, variant: int) -> list[Record]:
    """N pod records of about 1.3 KB each (labels dominate, as in real clusters)."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        labels = {f"app.kubernetes.io/label-{j}": f"value-{i}-{j}-{variant}-" + "x" * 40
                  for j in range(12)}
        fields = {
            "namespace": f"namespace-{i % 50}", "name": f"web-{i:07d}-abcde", "biz_id": 2,
            "set_name": "bkbcs", "module_name": "bkbcs", "node_name": f"node-{i % 300}",
            "host_ip": f"10.0.{i % 250}.{i % 200}", "pod_ip": f"10.{variant}.{i % 250}.9",
            "phase": "Running",
            "labels": orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
            "containers": orjson.dumps([{"name": "app", "image": f"registry/app:{variant}",
                                         "container_id": "containerd://" + "f" * 64}]).decode(),
        }
        out.append(Record(key=ObjectKey(f"{i:08d}-0000-4000-8000-000000000000"),
                          version=1 + i + variant * n, checksum=row_checksum(fields, PODS.stored),
                          query_at=now, fields=fields))
    return out


async def write(
    store: MySQLStore, records: Sequence[Record], batch: int
) -> tuple[float, float, int]:
    """Apply `records` in batches; return (wall s, client CPU s, rows written)."""
    wall, cpu, written = time.perf_counter(), time.process_time(), 0
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        written += (await store.table(PODS).apply(CLUSTER, chunk)).written
    return time.perf_counter() - wall, time.process_time() - cpu, written


async def run(server: str, variant: str, rows: int, batch: int) -> dict[str, float]:
    """One driver variant, one batch size, on a fresh database."""
    driver, mysql_conn.STATEMENT_CACHE, upsert = VARIANTS[variant]
    u = urlsplit(server)
    admin = pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                            user=u.username or "root", password=u.password or "",
                            autocommit=True)
    database = f"bench_drivers_{os.getpid()}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {database}")
        cur.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    base = server.split("://", 1)[1].rstrip("/")
    store = await MySQLStore.open(f"mysql+{driver}://{base}/{database}?upsert={upsert}")
    assert store.upsert == upsert
    try:
        first, second = pods(rows, 0), pods(rows, 1)
        insert = await write(store, first, batch)
        replay = await write(store, first, batch)
        update = await write(store, second, batch)
        assert insert[2] == rows and replay[2] == 0 and update[2] == rows
        loads, cpus, fetches = [], [], []
        for _ in range(5):
            wall, cpu = time.perf_counter(), time.process_time()
            index = await store.table(PODS).load_index(CLUSTER)
            loads.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            # The driver's share: the same query, rows left as tuples (no index built).
            cpu = time.process_time()
            raw = await store.conn.query("bench", INDEX_SQL, (CLUSTER,))
            fetches.append(time.process_time() - cpu)
        assert len(index) == rows == len(raw)
    finally:
        await store.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()
    return {"insert": rows / insert[0], "insert_cpu": insert[1],
            "replay": rows / replay[0], "update": rows / update[0], "update_cpu": update[1],
            "index": statistics.median(loads), "index_cpu": statistics.median(cpus),
            "fetch_cpu": statistics.median(fetches)}


def main() -> None:
    """Parse arguments, run every driver and batch size, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, action="append", help="rows per apply (repeat)")
    parser.add_argument("--driver", action="append", choices=list(VARIANTS))
    args = parser.parse_args()
    server = os.environ.get("BKCMDB_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
    print(f"{args.rows} rows; server {urlsplit(server).hostname}:{urlsplit(server).port}")
    print("| driver | batch | insert rows/s (client CPU s) | replay rows/s | "
          "update rows/s (client CPU s) | load_index s (client CPU s) | driver fetch CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for driver in args.driver or list(VARIANTS):
        for batch in args.batch or [500, 1000]:
            r = asyncio.run(run(server, driver, args.rows, batch))
            print(f"| {driver} | {batch} | {r['insert']:,.0f} ({r['insert_cpu']:.1f}) | "
                  f"{r['replay']:,.0f} | {r['update']:,.0f} ({r['update_cpu']:.1f}) | "
                  f"{r['index']:.3f} ({r['index_cpu']:.3f}) | {r['fetch_cpu']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
