"""Scale-out and failover: failover time after SIGKILL, clusters moved by a membership
change, and load spread over the members.

Three measurements, printed as Markdown tables (and as JSON with `--json`):

- **failover**: three real instances (`python -m synchronizer run`) on a private
  ZooKeeper (the Debian package's server, tests/zkserver.py, tick 200 ms), MariaDB and the
  simulator process (12 clusters x `--pods` pods, churning `--rate` changes per second
  per cluster). After a rolling start (one instance at a time) and a settled fleet, a
  worker is killed with SIGKILL, then (two left) the master. For each kill: the time from
  the signal until every cluster of the dead instance is listed by exactly one survivor's
  /status (`owned`), and until each of them is past its new owner's first full sync
  (`synced`). /status is polled every 50 ms, so figures carry +-50 ms. For each session
  timeout S in `--timeouts`, `--runs` runs (a fresh database, ZooKeeper root and
  simulator each); the median is reported, with min and max.
- **movement** (pure, `synchronizer.coordination.assign`): with 1,000 clusters, how many
  change owner when a 4th member joins 3 (sync-3 joins sync-0..2) and when one of 4
  leaves (each of the 4 in turn: min / median / max); the plain ring (the default),
  bounded loads (`load_factor` 1.25) and, for contrast, `hash % N`.
- **spread** (pure): max/mean and min/mean clusters per member for 2..8 members, 1,000
  clusters (and 100), plain ring and bounded loads.

    .venv/bin/python -m bench.failover                     # all three, S = 4 s and 10 s, 3 runs
    .venv/bin/python -m bench.failover --only movement,spread   # the pure parts (no services)
    .venv/bin/python -m bench.failover --only failover --timeouts 4 --runs 1

Needs `java` and the Debian `zookeeper` package (as the tests do) and MariaDB
(`BKCMDB_TEST_MYSQL`, default root on 127.0.0.1:3306; database `bench_failover` is
dropped and recreated for every run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from synchronizer.coordination import assign

from .common import drop_database, fresh_database, load, machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from zkserver import ZkServer  # noqa: E402  (the tests' private ZooKeeper server)

DATABASE = "bench_failover"
CLUSTERS = [f"c{i:02d}" for i in range(12)]
POLL = 0.05
GUARD = 120.0


# -- pure: movement and spread -----------------------------------------------------------------


def modulo(clusters: list[str], members: list[str]) -> dict[str, str]:
    """The naive alternative: md5(cluster) % N over the sorted members."""
    ordered = sorted(members)
    return {c: ordered[int(hashlib.md5(c.encode()).hexdigest(), 16) % len(ordered)]
            for c in clusters}


def moved(before: dict[str, str], after: dict[str, str]) -> int:
    """Clusters whose owner differs."""
    return sum(1 for c in before if before[c] != after[c])


def movement(n_clusters: int = 1000) -> list[dict[str, Any]]:
    """Clusters moved by 3 -> 4 (sync-3 joins) and 4 -> 3 (each member leaving in turn)."""
    clusters = [f"cluster-{i:04d}" for i in range(n_clusters)]
    three = ["sync-0", "sync-1", "sync-2"]
    four = [*three, "sync-3"]
    strategies = {
        "plain ring (default)": lambda c, m: assign(c, m),
        "bounded loads, load_factor 1.25": lambda c, m: assign(c, m, load_factor=1.25),
        "md5 % N (for contrast)": modulo,
    }
    rows = []
    for name, plan in strategies.items():
        base4 = plan(clusters, four)
        join = moved(plan(clusters, three), base4)
        leaves = sorted(moved(base4, plan(clusters, [m for m in four if m != gone]))
                        for gone in four)
        rows.append({"strategy": name, "clusters": n_clusters, "join_3_to_4": join,
                     "leave_4_to_3_min": leaves[0], "leave_4_to_3_median":
                     statistics.median(leaves), "leave_4_to_3_max": leaves[-1],
                     "ideal": n_clusters // 4})
    return rows


def spread(n_clusters: int, load_factor: float | None) -> list[dict[str, Any]]:
    """max/mean and min/mean clusters per member, 2..8 members."""
    clusters = [f"cluster-{i:04d}" for i in range(n_clusters)]
    rows = []
    for n in range(2, 9):
        members = [f"sync-{i}" for i in range(n)]
        counts = Counter(assign(clusters, members, load_factor=load_factor).values())
        loads = [counts.get(m, 0) for m in members]
        mean = n_clusters / n
        rows.append({"members": n, "clusters": n_clusters, "load_factor": load_factor,
                     "max": max(loads), "min": min(loads), "mean": round(mean, 1),
                     "max_over_mean": round(max(loads) / mean, 3),
                     "min_over_mean": round(min(loads) / mean, 3)})
    return rows


# -- failover with real processes ------------------------------------------------------------


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    """One `python -m synchronizer run` subprocess (log to a file)."""

    def __init__(self, name: str, workdir: Path, *, zk: str, root: str, timeout: float,
                 dsn: str, sim_url: str) -> None:
        self.name = name
        self.port = free_port()
        config = workdir / f"{name}.yaml"
        config.write_text(
            f"instance: {{id: {name}, address: 127.0.0.1, port: {self.port},"
            f" metric_port: {free_port()}}}\n"
            f"zookeeper: {{hosts: '{zk}', root: '{root}', session_timeout: {timeout}}}\n"
            f"cmdb: {{dsn: '{dsn}'}}\n"
            "sync: {linger: 0.005, full_sync_interval: 3600, lease_ttl: 10, backoff_max: 1,"
            " cluster_pull_interval: 3600, senders: 2}\n"
            "clusters:\n" + "".join(
                f"  - {{id: {c}, biz_id: {i + 1}, server: '{sim_url}/clusters/{c}'}}\n"
                for i, c in enumerate(CLUSTERS)))
        self.log = (workdir / f"{name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synchronizer", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL, cwd=ROOT)

    def status(self) -> dict[str, Any] | None:
        """/status, or None if it does not answer."""
        if self.proc.poll() is not None:
            return None
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.port}/status", timeout=1.0)
        except httpx.HTTPError:
            return None
        return reply.json() if reply.status_code == 200 else None

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM and reap (SIGKILL after 30 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def settled(fleet: list[Instance]) -> tuple[dict[str, Any], str | None]:
    """The fleet's /status documents and why it is not settled yet (None: settled: one
    master whose plan is the ring over the members, each running its share, watching)."""
    docs = {i.name: i.status() for i in fleet}
    names = sorted(docs)
    if any(d is None or d["members"] != names for d in docs.values()):
        return docs, "members"
    heads = [n for n, d in docs.items() if d and d["master"]]
    if len(heads) != 1:
        return docs, "master"
    plan = docs[heads[0]]["assignments"]  # type: ignore[index]
    if plan != assign(CLUSTERS, names):
        return docs, "plan"
    for name, doc in docs.items():
        assert doc is not None
        if sorted(c["id"] for c in doc["clusters"]) != sorted(
                c for c, o in plan.items() if o == name):
            return docs, f"{name} share"
        if any(c["state"] != "watching" for c in doc["clusters"]):
            return docs, f"{name} syncing"
    return docs, None


def wait_settled(fleet: list[Instance]) -> dict[str, Any]:
    """Poll until `settled`."""
    deadline = time.monotonic() + GUARD
    while True:
        docs, why = settled(fleet)
        if why is None:
            return docs
        if time.monotonic() > deadline:
            raise RuntimeError(f"fleet not settled after {GUARD}s: {why}")
        time.sleep(POLL)


def time_failover(fleet: list[Instance], victim: Instance) -> dict[str, float]:
    """SIGKILL `victim`; seconds until its clusters are owned by survivors, then synced."""
    theirs = {c["id"] for c in (victim.status() or {}).get("clusters", [])}
    survivors = [i for i in fleet if i is not victim]
    start = time.monotonic()
    victim.kill()
    owned_at = None
    deadline = start + GUARD
    while time.monotonic() < deadline:
        docs = [i.status() for i in survivors]
        holders: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            for c in (doc or {}).get("clusters", []):
                holders.setdefault(c["id"], []).append(c)
        if all(len(holders.get(c, [])) == 1 for c in theirs):
            now = time.monotonic()
            owned_at = owned_at or now
            if all(holders[c][0]["state"] == "watching" and holders[c][0]["last_full_sync"]
                   for c in theirs):
                return {"owned": owned_at - start, "synced": now - start,
                        "clusters": len(theirs)}
        time.sleep(POLL)
    raise RuntimeError(f"{victim.name}'s clusters not taken over within {GUARD}s")


def failover_run(zk: ZkServer, timeout: float, *, pods: int, rate: float, workdir: Path
                 ) -> dict[str, Any]:
    """One run: rolling start of 3, settle, churn; kill a worker, then the master."""
    dsn = fresh_database(DATABASE)
    root = f"/bench-failover-{uuid.uuid4().hex[:8]}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "synchronizer.simulator", "--port", "0", "--clusters",
         ",".join(CLUSTERS), "--pods", str(pods), "--bookmark-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, cwd=ROOT)
    fleet: list[Instance] = []
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        for n in range(3):
            fleet.append(Instance(f"sync-{n}", workdir, zk=zk.hosts, root=root,
                                  timeout=timeout, dsn=dsn, sim_url=url))
            docs = wait_settled(fleet)
        if rate > 0:
            for n, c in enumerate(CLUSTERS):
                httpx.post(f"{url}/_sim/clusters/{c}/churn",
                           json={"events": None, "rate": rate, "seed": n}).raise_for_status()
        head = next(i for i in fleet if docs[i.name]["master"])
        worker = next(i for i in fleet if i is not head)
        result = {"worker": time_failover(fleet, worker)}
        fleet.remove(worker)
        result["master"] = time_failover(fleet, head)
        return result
    finally:
        for inst in fleet:
            inst.stop()
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
        drop_database(DATABASE)


def failover(timeouts: list[float], runs: int, *, pods: int, rate: float) -> list[dict[str, Any]]:
    """`runs` runs per session timeout; median (min, max) of each figure."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        zk = ZkServer(Path(tmp) / "zookeeper")
        zk.start()
        try:
            for timeout in timeouts:
                results = []
                for run in range(runs):
                    workdir = Path(tmp) / f"s{timeout:g}-run{run}"
                    workdir.mkdir()
                    results.append(failover_run(zk, timeout, pods=pods, rate=rate,
                                                workdir=workdir))
                    print(f"  S={timeout:g}s run {run + 1}: {json.dumps(results[-1])}",
                          file=sys.stderr)
                row: dict[str, Any] = {"session_timeout": timeout, "runs": runs}
                for who in ("worker", "master"):
                    for what in ("owned", "synced"):
                        values = sorted(r[who][what] for r in results)
                        row[f"{who}_{what}"] = {"median": round(statistics.median(values), 2),
                                                "min": round(values[0], 2),
                                                "max": round(values[-1], 2)}
                    row[f"{who}_clusters"] = [r[who]["clusters"] for r in results]
                rows.append(row)
        finally:
            zk.stop()
    return rows


# -- report ------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    """The tables for docs/benchmarks.md."""
    out = []
    if "failover" in report:
        out += ["| S (session timeout) | runs | kill -9 worker: owned | synced | "
                "kill -9 master: owned | synced |", "| --- | --- | --- | --- | --- | --- |"]
        for r in report["failover"]:
            def cell(key: str, r: dict[str, Any] = r) -> str:
                v = r[key]
                return f"{v['median']:.2f} s ({v['min']:.2f}-{v['max']:.2f})"
            out.append(f"| {r['session_timeout']:g} s | {r['runs']} | {cell('worker_owned')} |"
                       f" {cell('worker_synced')} | {cell('master_owned')} |"
                       f" {cell('master_synced')} |")
        out.append("")
    if "movement" in report:
        out += ["| assignment | clusters | 3 -> 4 moved | 4 -> 3 moved (min / median / max) |"
                " ideal |", "| --- | --- | --- | --- | --- |"]
        for r in report["movement"]:
            out.append(f"| {r['strategy']} | {r['clusters']:,} | {r['join_3_to_4']} |"
                       f" {r['leave_4_to_3_min']} / {r['leave_4_to_3_median']:g} /"
                       f" {r['leave_4_to_3_max']} | {r['ideal']} |")
        out.append("")
    if "spread" in report:
        out += ["| members | 1,000 clusters: max/mean (min/mean) | bounded 1.25 |"
                " 100 clusters: max/mean (min/mean) | bounded 1.25 |",
                "| --- | --- | --- | --- | --- |"]
        table: dict[int, list[str]] = {}
        for r in report["spread"]:
            table.setdefault(r["members"], []).append(
                f"{r['max_over_mean']:.2f} ({r['min_over_mean']:.2f})")
        for members, cells in sorted(table.items()):
            out.append(f"| {members} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    """Parse the command line, measure, print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="failover,movement,spread",
                   help="comma-separated subset of failover, movement, spread")
    p.add_argument("--timeouts", default="4,10", help="session timeouts in seconds")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pods", type=int, default=200, help="pods per cluster (12 clusters)")
    p.add_argument("--rate", type=float, default=10.0,
                   help="churn per cluster, changes/s, during the failovers (0: none)")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = p.parse_args()
    parts = {s.strip() for s in args.only.split(",")}
    report: dict[str, Any] = {}
    if "failover" in parts:
        report["machine"] = machine()
        report["load_before"] = load()
        report["failover"] = failover([float(t) for t in args.timeouts.split(",")], args.runs,
                                      pods=args.pods, rate=args.rate)
        report["load_after"] = load()
    if "movement" in parts:
        report["movement"] = movement(1000)
    if "spread" in parts:
        report["spread"] = [r for n in (1000, 100) for f in (None, 1.25)
                            for r in spread(n, f)]
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    if "failover" in report:
        print(f"machine: {report['machine']}; load {report['load_before']:.2f} before, "
              f"{report['load_after']:.2f} after", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
