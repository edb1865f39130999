"""Watch events end to end into MariaDB: sustained events/s, and latency at a fixed rate.

Both start from a cluster of `--pods` Pods (made by the simulator's `populate`), a fresh
database, and the synchronizer side in its own process (`bench.ours`, or
`bench.naive_peer` with `--impl naive`) that has finished its first full sync.

Throughput (the simulator must not be the bottleneck, so the history is made first): hold
every watch stream (the simulator's stall switch) once the synchronizer's watch is open;
let the simulator's churn make `--events` changes flat out (creates, deletes, re-creates,
module moves, in-place updates — the same mix as the tests); then release the stream, which
replays the whole history as fast as it is read. Measured from the first event received
to the moment `ClusterReconciler.caught_up(final version)` returns (everything received is
committed). Reported: events/s (events received / that time), rows/s (records handed to
the store: the senders coalesce several events of one Pod into one row write), CPU.

Latency (at `--rate` events/s, for `--seconds`): the simulator (`bench.simproc`) makes the
changes on schedule and logs each one's resourceVersion, Pod uid and wall time; the
synchronizer side logs, for every record of every committed batch, its uid, version,
receipt time and the time `Store.apply` returned (the transaction committed). An event's
latency is the time from its change in the simulator to the first commit of that Pod at
that version or newer (an event coalesced into a newer one counts as written when the
newer one is). All processes read the same clock. The latency therefore includes the
simulator's own delivery (waking the stream, writing the chunk), loopback HTTP, parsing and
projection, the gate, the sender's linger (`--linger`, 20 ms by default) and batching, and
the transaction; it excludes nothing the CMDB's reader would wait for.

    .venv/bin/python -m bench.watch_throughput                     # both, 3 runs each
    .venv/bin/python -m bench.watch_throughput --pods 5000 --events 20000 --runs 1
    .venv/bin/python -m bench.watch_throughput --impl naive --events 10000 --seconds 20
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .common import (
    CpuMeter,
    SimProcess,
    Worker,
    count_rows,
    drop_database,
    fresh_database,
    load,
    mariadb_pid,
    median,
    percentile,
)
from .full_sync import MODULES, worker_args

DATABASE = "bench_watch"


def prepare(sim: SimProcess, pods: int) -> str:
    """Create the watch cluster of about `pods` Pods unless it exists; return its id.

    Churn keeps a cluster's size near where it started, so runs share it."""
    cluster = f"watch-{pods}"
    try:
        sim.stats(cluster)
    except Exception:  # no such cluster yet
        sim.create(cluster, pods=pods, seed=21)
    return cluster


def start_worker(sim: SimProcess, cluster: str, impl: str, options: Sequence[str]) -> Worker:
    """A fresh database and a worker that has done its first full sync."""
    dsn = fresh_database(DATABASE)
    sim.compact(cluster)  # forget earlier runs' history (memory), start clean
    worker = Worker(MODULES[impl], worker_args(sim, cluster, dsn, options))
    worker.call("start")
    return worker


def check_converged(sim: SimProcess, cluster: str) -> None:
    """The table's active rows must number the simulator's live Pods."""
    active = count_rows(DATABASE, cluster).get("Active", 0)
    pods = sim.stats(cluster)["pods"]
    if active != pods:
        raise RuntimeError(f"{active} active rows, {pods} live pods")


def throughput_once(sim: SimProcess, cluster: str, *, impl: str, events: int, seed: int,
                    options: Sequence[str]) -> dict[str, Any]:
    """One replay of `events` pre-made changes; see the module docstring."""
    sim.stall(cluster, True)
    worker = start_worker(sim, cluster, impl, options)
    try:
        with worker:
            sim.wait_watchers(cluster, 1)
            churn = sim.churn_flat_out(cluster, events, seed=seed)
            target = sim.stats(cluster)["resourceVersion"]
            before = load()
            worker.call("arm")
            meter = CpuMeter({"sim": sim.proc.pid, "db": mariadb_pid()})
            meter.start()
            sim.stall(cluster, False)
            r = worker.call("catch_up", rv=target)
            cpu = meter.stop()
            check_converged(sim, cluster)
    finally:
        sim.stall(cluster, False)
    seconds = r["done"] - r["first_event"]
    return {"events": r["events"], "seconds": seconds, "events_s": r["events"] / seconds,
            "rows_s": r["rows"] / seconds, "cpu_per_event_us": r["cpu"] / r["events"] * 1e6,
            "cpu_s": r["cpu"], "gc_s": r.get("gc_s", 0.0),
            **{f"{k}_cpu_s": v for k, v in cpu.items()},
            "changes": churn["done"], "load": before,
            "command": " ".join(["python", *worker.command[1:]])}


def latencies(changes: Sequence[tuple[int, str, float]],
              commits: Sequence[Sequence[Any]]) -> tuple[list[float], list[float], int]:
    """Per change: (change → commit, receipt → commit) seconds; and how many were missed."""
    by_uid: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for uid, version, received, committed in commits:
        by_uid[uid].append((int(version), float(received), float(committed)))
    total, inside, missed = [], [], 0
    for rv, uid, changed in changes:
        for version, received, committed in by_uid.get(uid, ()):
            if version >= rv:
                total.append(committed - changed)
                inside.append(committed - received)
                break
        else:
            missed += 1
    return sorted(total), sorted(inside), missed


def latency_once(sim: SimProcess, cluster: str, *, impl: str, rate: float, seconds: float,
                 seed: int,
                 options: Sequence[str]) -> dict[str, Any]:
    """One fixed-rate run; see the module docstring."""
    worker = start_worker(sim, cluster, impl, options)
    with worker:
        before = load()
        worker.call("arm")
        sim.timed_churn(cluster, int(rate * seconds), rate, seed=seed)
        changes = sim.timed_churn_wait(cluster)
        worker.call("catch_up", rv=max(rv for rv, _, _ in changes))
        commits = worker.call("commits")["commits"]
        check_converged(sim, cluster)
    total, inside, missed = latencies(changes, commits)
    span = changes[-1][2] - changes[0][2]
    return {"events": len(changes), "offered_s": len(changes) / span if span else 0.0,
            "p50_ms": percentile(total, 0.5) * 1e3, "p99_ms": percentile(total, 0.99) * 1e3,
            "max_ms": total[-1] * 1e3 if total else float("nan"),
            "in_p50_ms": percentile(inside, 0.5) * 1e3,
            "in_p99_ms": percentile(inside, 0.99) * 1e3,
            "missed": missed, "load": before,
            "command": " ".join(["python", *worker.command[1:]])}


def summarise(results: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    """Medians of the numeric figures, plus every run and `meta`."""
    keys = [k for k, v in results[0].items() if isinstance(v, float | int)]
    summary: dict[str, Any] = {k: median([r[k] for r in results]) for k in keys}
    summary.update(meta, runs=results, command=results[0]["command"])
    return summary


def measure_throughput(sim: SimProcess, *, impl: str = "ours", pods: int = 20_000,
                       events: int = 100_000, runs: int = 3,
                       options: Sequence[str] = ()) -> dict[str, Any]:
    """`runs` throughput runs; medians and every run."""
    cluster = prepare(sim, pods)
    results = [throughput_once(sim, cluster, impl=impl, events=events, seed=100 + i,
                               options=options) for i in range(runs)]
    drop_database(DATABASE)
    return summarise(results, impl=impl, pods=pods, options=list(options))


def measure_latency(sim: SimProcess, *, impl: str = "ours", pods: int = 20_000,
                    rate: float = 1000, seconds: float = 30, runs: int = 3,
                    options: Sequence[str] = ()) -> dict[str, Any]:
    """`runs` fixed-rate latency runs; medians and every run."""
    cluster = prepare(sim, pods)
    results = [latency_once(sim, cluster, impl=impl, rate=rate, seconds=seconds, seed=200 + i,
                            options=options) for i in range(runs)]
    drop_database(DATABASE)
    return summarise(results, impl=impl, pods=pods, rate=rate, seconds=seconds,
                     options=list(options))


def describe_throughput(s: dict[str, Any]) -> str:
    """One line of a throughput summary."""
    runs = "/".join(f"{r['events_s']:,.0f}" for r in s["runs"])
    return (f"{s['impl']} {' '.join(s['options']) or '(defaults)'}: {s['events']:,.0f} events"
            f" in {s['seconds']:.2f} s = {s['events_s']:,.0f} events/s ({s['rows_s']:,.0f}"
            f" rows/s, {s['cpu_per_event_us']:.0f} µs CPU/event, GC {s['gc_s']:.2f} s),"
            f" load {s['load']:.2f}"
            f" [runs {runs}]")


def describe_latency(s: dict[str, Any]) -> str:
    """One line of a latency summary."""
    runs = "/".join(f"{r['p99_ms']:.0f}" for r in s["runs"])
    return (f"{s['impl']} {' '.join(s['options']) or '(defaults)'}: {s['offered_s']:,.0f}"
            f" events/s offered, change→commit p50 {s['p50_ms']:.1f} ms p99 {s['p99_ms']:.1f}"
            f" ms (receipt→commit p50 {s['in_p50_ms']:.1f} p99 {s['in_p99_ms']:.1f} ms),"
            f" missed {s['missed']:.0f}, load {s['load']:.2f} [p99 runs {runs}]")


def main() -> None:
    """Parse options, run, print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=sorted(MODULES), default="ours")
    p.add_argument("--pods", type=int, default=20_000)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", choices=("throughput", "latency"))
    p.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args, options = p.parse_known_args()
    with SimProcess() as sim:
        if args.only != "latency":
            t = measure_throughput(sim, impl=args.impl, pods=args.pods, events=args.events,
                                   runs=args.runs, options=options)
            print(describe_throughput(t), flush=True)
            if args.json:
                print(json.dumps(t, indent=1))
        if args.only != "throughput":
            lat = measure_latency(sim, impl=args.impl, pods=args.pods, rate=args.rate,
                                  seconds=args.seconds, runs=args.runs, options=options)
            print(describe_latency(lat), flush=True)
            if args.json:
                print(json.dumps(lat, indent=1))


if __name__ == "__main__":
    main()
