"""Full sync of N realistic Pods into an empty `pods` table, then the no-change re-sync.

The simulated API server (`bench.simproc`, its own process) holds N Pods made by the
simulator's `populate` (about 5.5 KB of JSON each: labels, annotations, managedFields, two
containers, status). For each run: drop and recreate the database (an empty table), start
the synchronizer side in a fresh process (`bench.ours`, or `bench.naive_peer` with
`--impl naive`), time its first full sync (list page by page, diff against the empty
index, write every Pod), then ask `--resyncs` times (3) for a full sync with nothing changed
(list again, diff against the stored index, write nothing), each timed and followed by a
plain read, the run's figures being the medians; then read the process's peak RSS (VmHWM,
which includes the interpreter and imports).

Two references are measured in the same run, so the figures that matter are ratios:
- a plain paged read of the same list by the same worker through the same client (bytes
  and continue tokens only): the floor of any re-sync, since the bytes must be read
  (`resync_to_read`, the median of each re-sync over the read after it; target ≤ 1.3);
- the MariaDB bulk-insert rate of the same rows (`common.bulk_insert_seconds`: multi-row
  INSERTs of 500 rows through asyncmy from a tight loop): the initial sync's rate as a
  fraction of it (`initial_to_bulk`, target ≥ 0.7).

    .venv/bin/python -m bench.full_sync                       # 100,000 pods, 3 runs
    .venv/bin/python -m bench.full_sync --pods 5000 --runs 1 --gc freeze
    .venv/bin/python -m bench.full_sync --impl naive --pods 20000 --runs 1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .common import (
    CpuMeter,
    SimProcess,
    Worker,
    bulk_insert_seconds,
    count_rows,
    drop_database,
    fresh_database,
    load,
    mariadb_pid,
    median,
)

DATABASE = "bench_full_sync"
RESYNCS = 3
"""No-change re-syncs per run, each followed by a plain read: the first one after the
initial sync shares the machine with MariaDB's background work (purge, page flushing) of
the 100,000 rows just written, which a single measurement would take for the re-sync's."""
MODULES = {"ours": "bench.ours", "naive": "bench.naive_peer"}


def worker_args(sim: SimProcess, cluster: str, dsn: str, options: Sequence[str]) -> list[str]:
    """Command-line arguments of a worker process for one cluster and database."""
    return ["--url", sim.cluster_url(cluster), "--dsn", dsn, "--cluster", cluster, *options]


def cluster_for(pods: int) -> str:
    """The simulated cluster of `pods` Pods (one per size, never changed)."""
    return f"full-{pods}"


def prepare(sim: SimProcess, pods: int) -> str:
    """Create the cluster of `pods` Pods unless it exists; return its id."""
    cluster = cluster_for(pods)
    try:
        sim.stats(cluster)
    except Exception:  # no such cluster yet
        sim.create(cluster, pods=pods, seed=11)
    return cluster


def run_once(sim: SimProcess, *, impl: str, pods: int, options: Sequence[str],
             resync: bool = True, resyncs: int = RESYNCS) -> dict[str, Any]:
    """One run on a fresh database: initial sync, then `resyncs` no-change re-syncs each
    followed by a plain read (the medians of each are the run's figures), peak RSS."""
    cluster = cluster_for(pods)
    dsn = fresh_database(DATABASE)
    before = load()
    worker = Worker(MODULES[impl], worker_args(sim, cluster, dsn, options))
    meter = CpuMeter({"sim": sim.proc.pid, "db": mariadb_pid()})
    with worker:
        meter.start()
        first = worker.call("start")
        first_cpu = meter.stop()
        second: dict[str, Any] | None = None
        if resync:
            rounds = []
            for _ in range(resyncs):
                meter.start()
                again = worker.call("resync")
                rounds.append((again, meter.stop(), worker.call("read_list")))
            second = {k: median([r[0][k] for r in rounds]) for k in ("seconds", "cpu", "gc_s")}
            second["rows"] = sum(r[0]["rows"] for r in rounds)
            second_cpu = {k: median([r[1][k] for r in rounds]) for k in rounds[0][1]}
            read = {"seconds": median([r[2]["seconds"] for r in rounds])}
            ratios = [r[0]["seconds"] / r[2]["seconds"] for r in rounds]
        last = worker.close()
    bulk_s, bulk_rows = bulk_insert_seconds(DATABASE, cluster)
    rows = count_rows(DATABASE, cluster)
    if rows.get("Active", 0) != pods:
        raise RuntimeError(f"{impl}: {rows} rows after the sync of {pods} pods")
    out: dict[str, Any] = {
        "initial_s": first["seconds"], "initial_pods_s": pods / first["seconds"],
        "initial_cpu_s": first["cpu"], "vmhwm_mib": last["vmhwm_kib"] / 1024,
        **{f"initial_{k}_cpu_s": v for k, v in first_cpu.items()},
        "initial_gc_s": first.get("gc_s", 0.0),
        "load": before, "command": " ".join(["python", *worker.command[1:]]),
        "bulk_s": bulk_s, "bulk_rows_s": bulk_rows / bulk_s,
        "initial_to_bulk": (pods / first["seconds"]) / (bulk_rows / bulk_s),
    }
    if second is not None:
        out.update(resync_s=second["seconds"], resync_pods_s=pods / second["seconds"],
                   resync_cpu_s=second["cpu"], resync_rows=second["rows"],
                   resync_gc_s=second.get("gc_s", 0.0), read_s=read["seconds"],
                   resync_to_read=median(ratios),
                   **{f"resync_{k}_cpu_s": v for k, v in second_cpu.items()})
    return out


def measure(sim: SimProcess, *, impl: str = "ours", pods: int = 100_000, runs: int = 3,
            options: Sequence[str] = (), resync: bool = True,
            resyncs: int = RESYNCS) -> dict[str, Any]:
    """`runs` runs; the medians of each figure, and every run."""
    prepare(sim, pods)
    results = [run_once(sim, impl=impl, pods=pods, options=options, resync=resync,
                        resyncs=resyncs)
               for _ in range(runs)]
    drop_database(DATABASE)
    keys = [k for k, v in results[0].items() if isinstance(v, float | int)]
    summary: dict[str, Any] = {k: median([r[k] for r in results]) for k in keys}
    summary.update(impl=impl, pods=pods, runs=results, options=list(options),
                   command=results[0]["command"])
    return summary


def describe(s: dict[str, Any]) -> str:
    """One line of a summary."""
    line = (f"{s['impl']} {' '.join(s['options']) or '(defaults)'}: {s['pods']:,} pods, "
            f"initial {s['initial_s']:.2f} s ({s['initial_pods_s']:,.0f} pods/s)")
    line += f" = {s['initial_to_bulk']:.2f}x bulk insert ({s['bulk_rows_s']:,.0f} rows/s)"
    if "resync_s" in s:
        line += (f", re-sync {s['resync_s']:.2f} s ({s['resync_pods_s']:,.0f} pods/s)"
                 f" = {s['resync_to_read']:.2f}x a plain paged read ({s['read_s']:.2f} s)")
    runs = "/".join(f"{r['initial_s']:.1f}" for r in s["runs"])
    line += f", GC {s['initial_gc_s']:.2f}/{s.get('resync_gc_s', 0):.2f} s"
    return line + f", peak RSS {s['vmhwm_mib']:.0f} MiB, load {s['load']:.2f} [runs {runs}]"


def main() -> None:
    """Parse options, run, print one line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=sorted(MODULES), default="ours")
    p.add_argument("--pods", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-resync", action="store_true")
    p.add_argument("--resyncs", type=int, default=RESYNCS,
                   help="no-change re-syncs per run, each followed by a plain read")
    p.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args, options = p.parse_known_args()
    with SimProcess() as sim:
        summary = measure(sim, impl=args.impl, pods=args.pods, runs=args.runs,
                          options=options, resync=not args.no_resync,
                          resyncs=args.resyncs)
        print(describe(summary))
        if args.json:
            print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
