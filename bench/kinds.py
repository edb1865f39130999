"""Every kind of one large cluster: initial sync, no-change re-sync, events/s under mixed churn.

The cluster (the simulator, its own process): `--nodes` Nodes, `--workloads` workloads of
every kind (Deployments with their ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs)
and `--pods` Pods owned by them, over `--namespaces` namespaces. The synchronizer side runs
in this process, wired as `synchronizer.clusters` does it: one reconciler per resource
(eight), one shared `ClusterClient`, the instance's one `Writer` over the MariaDB store,
the Prometheus metrics, as many full syncs at once as `sync.max_concurrent_full_syncs`
allows by default. Measured on a fresh database:

- **initial**: from start until every resource has finished its first full sync;
- **re-sync**: a full sync of every resource asked at once, nothing changed meanwhile
  (the second full sync of the run: unchanged objects are vouched for and not decoded);
- **mixed churn**: the watches are held (the simulator's stall switch) while the
  simulator's change streams make `--events` changes synchronously — Pods replaced and
  relabelled, rollouts and scaling, node labels and cordons, namespaces created and deleted,
  plus the status-only noise (heartbeats, ready counts, restart counts) that must write
  nothing — then released; from the first event received until every resource has caught
  up with the final version (everything received is committed): events/s (every watch
  event of every resource) and rows written.

CPU is this process's (the synchronizer side) per phase. Medians of `--runs` runs.

    .venv/bin/python -m bench.kinds                         # 2,000 nodes/workloads, 50,000 pods
    .venv/bin/python -m bench.kinds --pods 5000 --nodes 200 --workloads 200 --events 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from reconciler import ClusterId, ClusterReconciler, ReconcilerSettings, Writer, WriterSettings
from synchronizer.cmdb import open_store
from synchronizer.kinds import KINDS
from synchronizer.kube import ClusterClient, KubeSource
from synchronizer.metrics import PrometheusMetrics
from synchronizer.settings import SyncSettings

from .common import SimProcess, drop_database, fresh_database, load, machine, median

DATABASE = "bench_kinds"
CLUSTER = "kinds"
STREAMS = {"pods": 0.35, "workloads": 0.1, "nodes": 0.05, "namespaces": 0.01,
           "heartbeats": 0.3, "workload_status": 0.1, "pod_restarts": 0.09}
"""The share of `--events` each simulator stream makes (real changes first, then noise)."""


async def _timed(what: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one awaited phase."""
    wall, cpu = time.perf_counter(), time.process_time()
    await what()
    return time.perf_counter() - wall, time.process_time() - cpu


def _events(metrics: PrometheusMetrics) -> float:
    total = 0.0
    for metric in metrics.registry.collect():
        if metric.name == "bkcmdb_sync_events":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total")
                         and s.labels.get("type") in ("ADDED", "MODIFIED", "DELETED"))
    return total


def _written(metrics: PrometheusMetrics) -> float:
    total = 0.0
    for metric in metrics.registry.collect():
        if metric.name == "bkcmdb_sync_writes":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total")
                         and s.labels.get("result") == "written")
    return total


async def run_once(sim: SimProcess, events: int) -> dict[str, Any]:
    """One run on a fresh database; the figures of each phase."""
    store = await open_store(fresh_database(DATABASE), pool_size=16)
    metrics = PrometheusMetrics()
    writer = Writer(settings=WriterSettings(), metrics=metrics, multi=store)  # type: ignore[arg-type]
    client = ClusterClient.from_url(sim.cluster_url(CLUSTER), cluster_id=CLUSTER, watches=8)
    slots = asyncio.Semaphore(SyncSettings().max_concurrent_full_syncs)
    recs = []
    for kind in KINDS.values():
        for resource in kind.resources:
            source = KubeSource(client, kind=kind, resource=resource, biz_id=2,
                                inactivity=600, metrics=metrics)
            recs.append(ClusterReconciler(
                cluster=ClusterId(CLUSTER), kind=resource.plural, source=source,
                store=store.table(kind, resource), metrics=metrics, writer=writer,
                settings=ReconcilerSettings(full_sync_interval=3600), full_sync_slots=slots))
    writer_task = asyncio.create_task(writer.run())
    tasks: list[asyncio.Task[None]] = []
    out: dict[str, Any] = {}
    try:
        async def start() -> None:
            tasks.extend(asyncio.create_task(r.run()) for r in recs)
            await asyncio.gather(*(r.wait_synced(0) for r in recs))

        out["initial_s"], out["initial_cpu_s"] = await _timed(start)
        out["rows_written_initial"] = _written(metrics)

        async def resync() -> None:
            for r in recs:
                r.request_full_sync("bench")
            await asyncio.gather(*(r.wait_synced(1) for r in recs))

        written = _written(metrics)
        out["resync_s"], out["resync_cpu_s"] = await _timed(resync)
        out["resync_rows_written"] = _written(metrics) - written

        await asyncio.to_thread(sim.stall, CLUSTER, True)
        for stream, share in STREAMS.items():
            await asyncio.to_thread(sim.admin, "POST", f"{CLUSTER}/churn/{stream}/step",
                                    {"n": max(1, int(events * share))})
        final = int((await asyncio.to_thread(sim.stats, CLUSTER))["resourceVersion"])
        events0, written = _events(metrics), _written(metrics)

        async def catch_up() -> None:
            await asyncio.to_thread(sim.stall, CLUSTER, False)
            await asyncio.gather(*(r.caught_up(final) for r in recs))

        out["churn_s"], out["churn_cpu_s"] = await _timed(catch_up)
        out["churn_events"] = _events(metrics) - events0
        out["churn_events_per_s"] = out["churn_events"] / out["churn_s"]
        out["churn_rows_written"] = _written(metrics) - written
    finally:
        for r in recs:
            r.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)
        await client.aclose()
        await store.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=50_000)
    p.add_argument("--nodes", type=int, default=2_000)
    p.add_argument("--workloads", type=int, default=2_000)
    p.add_argument("--namespaces", type=int, default=20)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args(argv)
    runs = []
    with SimProcess() as sim:
        sim.admin("POST", CLUSTER, {"bookmark_interval": 1.0})
        counts = sim.admin("POST", f"{CLUSTER}/populate", {
            "pods": a.pods, "nodes": a.nodes, "workloads": a.workloads,
            "namespaces": a.namespaces, "seed": 8})["kinds"]
        for _ in range(a.runs):
            before = load()
            runs.append({**asyncio.run(run_once(sim, a.events)), "load": before})
    drop_database(DATABASE)
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    summary = {k: median([r[k] for r in runs]) for k in keys}
    print(json.dumps({"machine": machine(), "cluster": counts, "events": a.events,
                      "median": summary, "runs": runs}, indent=1))
    print(f"{a.pods:,} pods, {a.nodes:,} nodes, {a.workloads:,} workloads, all kinds:"
          f" initial {summary['initial_s']:.1f} s, no-change re-sync {summary['resync_s']:.2f} s"
          f" ({summary['resync_rows_written']:.0f} rows written), mixed churn"
          f" {summary['churn_events_per_s']:,.0f} events/s")


if __name__ == "__main__":
    main()
