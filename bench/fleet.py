"""Fleet scale: one real instance (`python -m synchronizer run`) owning N clusters of M pods.

Every kind is on (pods, nodes, namespaces, workloads: eight watches per cluster); the
simulated API server runs in its own process (`bench.simproc`) and bookmarks every watch
every second, the pessimistic case (a real API server bookmarks about once a minute). The
instance writes to a fresh MariaDB database. Measured, in one run:

- **first sync**: seconds from the process start until every cluster's every kind has
  finished its first full sync (polled from /status);
- **idle**: CPU of the instance per cluster per second while nothing changes (bookmarks
  only), over `--idle` seconds; RSS then;
- **steady**: at `--rate` events/s spread evenly over the clusters (each cluster's own
  churn, pods), CPU seconds of the instance per 1,000 events (events counted from
  /status at the instants the CPU is read) and the event → row lag
  (p50/p99 from the `event_to_row_seconds` histogram: observation to commit, so bucket
  resolution). The bookmarks go on meanwhile, so the figure is also given *net* of the
  idle CPU measured just before (`cpu_s_per_1000_events_net`): at the idle target of
  0.2 ms per cluster per second, 200 clusters' bookmarks alone would be 0.1 CPU s per
  1,000 events at 400 events/s, over three times a burst's whole cost per event, so the
  per-event target can only be about the events. `--bookmark-interval 60` measures the
  gross figure with bookmarks about as often as kube-apiserver sends them;
- **stop**: seconds from SIGTERM until the instance exited (every cluster stood down, its
  leases released); a Pod has 30 s by default before the kubelet kills it;
- **reference, same run**: an instance with ONE cluster of M pods (RSS, and the CPU per
  event of a burst: `--burst` changes made as fast as the simulator can, the median of
  `--bursts` bursts), and ONE cluster of N*M pods (its first full sync): the targets of
  the fleet issue are ratios to these.

    .venv/bin/python -m bench.fleet                         # 200 x 500 at 400 events/s
    .venv/bin/python -m bench.fleet --clusters 500 --pods 200 --rate 400
    .venv/bin/python -m bench.fleet --clusters 1000 --pods 100 --rate 0 --no-reference
    .venv/bin/python -m bench.fleet --bookmark-interval 60   # bookmarks as a real server's
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from .common import PYTHON, ROOT, SimProcess, drop_database, fresh_database, load, median

DATABASE = "bench_fleet"
POLL = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Scrape:
    """The metrics page of one moment."""

    def __init__(self, text: str) -> None:
        self.lines = [line for line in text.splitlines() if not line.startswith("#")]

    def counter(self, name: str, **match: str) -> float:
        """Sum of a counter's samples whose labels include `match`."""
        total = 0.0
        for line in self.lines:
            if not line.startswith(name):
                continue
            labels, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in labels for k, v in match.items()):
                total += float(value)
        return total

    def histogram(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts (summed over labels) of a histogram."""
        out: dict[float, float] = {}
        for line in self.lines:
            if line.startswith(name + "_bucket{"):
                labels, _, value = line.rpartition(" ")
                le = labels.split('le="')[1].split('"')[0]
                bound = float("inf") if le == "+Inf" else float(le)
                out[bound] = out.get(bound, 0.0) + float(value)
        return out


class Instance:
    """`python -m synchronizer run` on a config naming `clusters` of the simulator."""

    def __init__(self, sim: SimProcess, clusters: list[str], dsn: str, *,
                 loop: str = "uvloop", **sync: Any) -> None:
        self.port, self.metric_port = free_port(), free_port()
        config = {
            "instance": {"id": "bench-fleet", "address": "127.0.0.1", "port": self.port,
                         "metric_port": self.metric_port, "event_loop": loop},
            "cmdb": {"dsn": dsn},
            "sync": {"full_sync_interval": 3600, **sync},
            "clusters": [{"id": c, "biz_id": 2, "server": sim.cluster_url(c)}
                         for c in clusters],
        }
        self._dir = tempfile.TemporaryDirectory(prefix="bench-fleet-")
        path = Path(self._dir.name) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self._log = open(Path(self._dir.name) / "instance.log", "w")  # noqa: SIM115
        self.clusters = clusters
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "synchronizer", "--log-level", "WARNING", "run", "--config",
             str(path)], cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")})
        self.http = httpx.Client(timeout=60)

    def status(self) -> dict[str, Any]:
        return dict(self.http.get(f"http://127.0.0.1:{self.port}/status").json())

    def metrics(self) -> str:
        return self.http.get(f"http://127.0.0.1:{self.metric_port}/metrics").text

    def wait_first_sync(self, timeout: float) -> float:
        """Seconds from the start until every cluster's every kind has synced once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance exited: {self.tail()}")
            try:
                doc = self.status()
            except httpx.HTTPError:
                time.sleep(POLL)
                continue
            done = [c for c in doc["clusters"] if c["last_full_sync"]]
            if len(done) == len(self.clusters):
                return time.monotonic() - self.started
            time.sleep(POLL)
        raise RuntimeError(f"first sync not done in {timeout} s: {self.tail()}")

    def events_seen(self) -> int:
        """Change events the instance's watches have received, from /status: read at the
        instants the CPU is, where a scrape's count is of whenever, during a scrape of
        seconds (3 s at 1,000 clusters), the page was rendered."""
        return sum(int(c["events"]) for c in self.status()["clusters"])

    def scrape(self) -> Scrape:
        """One scrape of the instance's metrics (a fleet's page takes the instance a while
        to render: read every figure of one moment from one scrape)."""
        return Scrape(self.metrics())

    def tail(self) -> str:
        self._log.flush()
        return (Path(self._dir.name) / "instance.log").read_text()[-3000:]

    def close(self) -> float | None:
        """SIGTERM, and the seconds until the instance exited (None: it had, or was
        killed after 120 s). A Pod gets 30 s by default before the kubelet kills it."""
        self.http.close()
        took = None
        if self.proc.poll() is None:
            sent = time.monotonic()
            self.proc.terminate()
            try:
                self.proc.wait(120)
                took = time.monotonic() - sent
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._dir.cleanup()
        return took


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The bucket bound below which `q` of the observations between two scrapes fall."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return 0.0
    for bound, n in zip(bounds, counts, strict=True):
        if n >= q * total:
            return bound
    return bounds[-1]


def populate(sim: SimProcess, cluster: str, pods: int, seed: int,
             bookmark_interval: float = 1.0) -> None:
    sim.admin("POST", cluster, {"bookmark_interval": bookmark_interval})
    sim.admin("POST", f"{cluster}/populate", {
        "pods": pods, "namespaces": 4, "seed": seed, "nodes": max(3, pods // 50),
        "workloads": max(4, pods // 20)})


def troubles(inst: Scrape) -> dict[str, float]:
    """Counters that explain lag: full syncs by trigger, watch restarts by reason, parked
    overflows, failed or fenced batches."""
    out: dict[str, float] = {}
    for trigger in ("expired", "overflow", "periodic", "retry"):
        out[f"full_syncs:{trigger}"] = inst.counter("bkcmdb_sync_full_syncs_total",
                                                    trigger=trigger)
    for reason in ("expired", "error", "stalled", "closed"):
        out[f"watch_restarts:{reason}"] = inst.counter("bkcmdb_sync_watch_restarts_total",
                                                       reason=reason)
    out["gate_overflows"] = inst.counter("bkcmdb_sync_gate_overflows_total")
    for result in ("transient", "fenced", "error"):
        out[f"batches:{result}"] = inst.counter("bkcmdb_sync_batches_total", result=result)
    return out


def changes(inst: Scrape) -> float:
    return sum(inst.counter("bkcmdb_sync_events_total", type=t)
               for t in ("ADDED", "MODIFIED", "DELETED"))


def measure_fleet(sim: SimProcess, args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    clusters = [f"{prefix}-{n:04d}" for n in range(args.clusters)]
    for n, cluster in enumerate(clusters):
        populate(sim, cluster, args.pods, seed=n, bookmark_interval=args.bookmark_interval)
    dsn = fresh_database(DATABASE)
    inst = Instance(sim, clusters, dsn, loop=args.loop, **args.sync)
    try:
        out: dict[str, Any] = {"clusters": args.clusters, "pods": args.pods,
                               "load": load()}
        out["first_sync_s"] = inst.wait_first_sync(args.timeout)
        time.sleep(args.settle)
        cpu0, t0 = cpu_seconds(inst.proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = cpu_seconds(inst.proc.pid) - cpu0
        idle_share = idle_cpu / (time.monotonic() - t0)
        out["idle_ms_per_cluster_s"] = 1000 * idle_share / args.clusters
        out["rss_mib"] = rss_mib(inst.proc.pid)
        if args.rate > 0:
            per = args.rate / args.clusters
            for n, cluster in enumerate(clusters):
                sim.admin("POST", f"{cluster}/churn", {"events": None, "rate": per, "seed": n})
            time.sleep(args.settle)
            page = inst.scrape()
            hist0 = page.histogram("bkcmdb_sync_event_to_row_seconds")
            troubles0 = troubles(page)
            ev0 = inst.events_seen()
            cpu0, t0 = cpu_seconds(inst.proc.pid), time.monotonic()
            time.sleep(args.steady)
            cpu = cpu_seconds(inst.proc.pid) - cpu0
            elapsed = time.monotonic() - t0
            events = inst.events_seen() - ev0
            page = inst.scrape()
            hist = page.histogram("bkcmdb_sync_event_to_row_seconds")
            for cluster in clusters:
                sim.admin("DELETE", f"{cluster}/churn")
            out["steady_troubles"] = {k: v - troubles0.get(k, 0.0)
                                      for k, v in troubles(page).items()
                                      if v - troubles0.get(k, 0.0)}
            out.update(events_per_s=events / elapsed, cpu_share=cpu / elapsed,
                       cpu_s_per_1000_events=1000 * cpu / max(events, 1),
                       cpu_s_per_1000_events_net=1000 * max(cpu - idle_share * elapsed, 0.0)
                       / max(events, 1),
                       lag_p50_s=quantile(hist0, hist, 0.5),
                       lag_p99_s=quantile(hist0, hist, 0.99),
                       rss_steady_mib=rss_mib(inst.proc.pid))
        out["stop_s"] = inst.close()
        return out
    finally:
        inst.close()
        for cluster in clusters:
            sim.admin("DELETE", cluster)


def measure_single(sim: SimProcess, args: argparse.Namespace, pods: int, prefix: str,
                   burst: int) -> dict[str, Any]:
    cluster = f"{prefix}-one"
    populate(sim, cluster, pods, seed=99, bookmark_interval=args.bookmark_interval)
    dsn = fresh_database(DATABASE)
    inst = Instance(sim, [cluster], dsn, loop=args.loop, **args.sync)
    try:
        out: dict[str, Any] = {"pods": pods, "first_sync_s": inst.wait_first_sync(args.timeout)}
        time.sleep(args.settle)
        out["rss_mib"] = rss_mib(inst.proc.pid)
        if burst:
            per_burst = []
            for n in range(args.bursts):
                ev0, cpu0 = changes(inst.scrape()), cpu_seconds(inst.proc.pid)
                sim.churn_flat_out(cluster, burst, seed=5 + n)
                deadline = time.monotonic() + args.timeout
                while changes(inst.scrape()) - ev0 < burst * 0.99 \
                        and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1.0)  # the last batch's commit
                events = changes(inst.scrape()) - ev0
                per_burst.append(1000 * (cpu_seconds(inst.proc.pid) - cpu0) / max(events, 1))
            out["burst_cpu_s_per_1000_events"] = median(per_burst)
        return out
    finally:
        inst.close()
        sim.admin("DELETE", cluster)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--pods", type=int, default=500)
    p.add_argument("--rate", type=float, default=400.0, help="events/s over the fleet")
    p.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    p.add_argument("--steady", type=float, default=30.0, help="seconds of steady churn")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--burst", type=int, default=20_000, help="reference burst events")
    p.add_argument("--bursts", type=int, default=3,
                   help="reference bursts per run, their median taken (one burst read"
                   " 0.039-0.063 ms per event over runs of the same code)")
    p.add_argument("--bookmark-interval", type=float, default=1.0,
                   help="seconds between the simulator's bookmarks of each watch (1: the"
                   " pessimistic case of the targets; 60: about what kube-apiserver does)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the instances' event loop (instance.event_loop)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a `sync` setting of the instances (repeatable), e.g. linger=0.1")
    args = p.parse_args()
    args.sync = {k: yaml.safe_load(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    results: dict[str, Any] = {"fleet": [], "single": [], "big": []}
    with SimProcess() as sim:
        for run in range(args.runs):
            # The fleet first: the references write (and drop) up to N x M rows, whose
            # aftermath in MariaDB (purge, flushing) would land in the fleet's window.
            results["fleet"].append(measure_fleet(sim, args, f"f{run}"))
            print(json.dumps(results["fleet"][-1]), file=sys.stderr, flush=True)
            if not args.no_reference:
                results["single"].append(measure_single(sim, args, args.pods, f"s{run}",
                                                        args.burst))
                results["big"].append(measure_single(sim, args, args.clusters * args.pods,
                                                     f"b{run}", 0))
    drop_database(DATABASE)
    summary = {part: {k: median([r[k] for r in runs]) for k in runs[0]
                      if isinstance(runs[0][k], int | float)}
               for part, runs in results.items() if runs}
    fleet = summary["fleet"]
    line = (f"fleet {args.clusters} x {args.pods} pods (all kinds): first sync "
            f"{fleet['first_sync_s']:.1f} s, idle {fleet['idle_ms_per_cluster_s']:.3f} ms CPU"
            f" per cluster per s, RSS {fleet['rss_mib']:.0f} MiB")
    if "cpu_s_per_1000_events" in fleet:
        line += (f"; at {fleet['events_per_s']:.0f} events/s: "
                 f"{fleet['cpu_s_per_1000_events']:.3f} CPU s per 1,000 events "
                 f"({fleet['cpu_s_per_1000_events_net']:.3f} net of idle; "
                 f"{100 * fleet['cpu_share']:.0f} % of a core), lag p50 "
                 f"{fleet['lag_p50_s'] * 1000:.0f} ms p99 {fleet['lag_p99_s'] * 1000:.0f} ms")
    print(line)
    if "single" in summary:
        single, big = summary["single"], summary["big"]
        per_cluster = (fleet["rss_mib"] - single["rss_mib"]) / max(args.clusters - 1, 1)
        print(f"reference: one cluster of {args.pods} pods RSS {single['rss_mib']:.0f} MiB,"
              f" burst {single.get('burst_cpu_s_per_1000_events', 0):.3f} CPU s per 1,000"
              f" events; one cluster of {args.clusters * args.pods} pods first sync"
              f" {big['first_sync_s']:.1f} s")
        burst = max(single.get("burst_cpu_s_per_1000_events", 1e-9), 1e-9)
        ratio = fleet.get("cpu_s_per_1000_events", 0) / burst
        net = fleet.get("cpu_s_per_1000_events_net", 0) / burst
        print(f"ratios: CPU per event {ratio:.2f}x the single-cluster burst, {net:.2f}x net"
              f" of idle (target <= 3);"
              f" RSS {per_cluster:.2f} MiB per extra cluster (target <= 0.75); first sync"
              f" {fleet['first_sync_s'] / big['first_sync_s']:.2f}x one cluster of the same"
              f" pods (target <= 1.5)")
    if args.json:
        print(json.dumps({"summary": summary, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
