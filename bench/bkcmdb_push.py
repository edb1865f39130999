"""The bk-cmdb push benchmark: `python -m bench.bkcmdb_push` (docs/benchmarks.md, "BlueKing
CMDB push").

Three processes, as in production: the simulated Kubernetes API server (`bench.simproc`),
the bk-cmdb simulator (`bench.bksimproc`), and this driver, which runs one synchronizer
`Instance` in-process (standalone, MariaDB tables) and measures. Per run:

1. *Tables.* A cluster of `--pods` Pods with its Nodes (one per 40 Pods), namespaces and
   workloads is synced into empty tables by an instance without `bkcmdb:` (not measured).
2. *Initial push.* An instance with `bkcmdb:` (unthrottled: rate 1000/s) starts on the
   full tables; its first push (full: bk-cmdb listed, then everything created) is timed
   from its start to its report: objects/s, requests/s, and the batch fill (objects per
   pod create request over bk-cmdb's limit of 200).
3. *Ceiling.* What the simulator sustains, in the same state: `CEILING_REQUESTS` pod
   creates of 200 pods, `CEILING_CONCURRENCY` at a time, into a scratch cluster (removed
   afterwards; few enough that the state stays about the same). The limit the CMDB allows
   is then 200 objects times that request rate.
4. *Steady push under churn.* `--rate` Pod changes per second for `--seconds`, each one
   bk-cmdb must see (half replaced Pods, half relabelled: bk-cmdb has no pod update, so
   both are a delete and a create there), on real Nodes. Objects/s and requests/s over the
   churn, the batch fill, and the end-to-end lag of each change — its time in the
   Kubernetes simulator to the time bk-cmdb applied the create of that pod — p50/p99.

Figures are medians over `--runs` runs; the JSON goes to bench/results-bkcmdb.json.

    .venv/bin/python -m bench.bkcmdb_push                    # 50,000 Pods, 3 runs
    .venv/bin/python -m bench.bkcmdb_push --pods 5000 --runs 1 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.bkcmdb import BkCmdbClient, BkCmdbSettings
from synchronizer.bkcmdb.pusher import Pusher, PushReport
from synchronizer.bkcmdb.types import (
    ClusterSpec,
    ContainerSpec,
    NamespaceSpec,
    NodeSpec,
    PodSpec,
    WorkloadSpec,
)
from synchronizer.bkcmdb_service import WAITING
from synchronizer.settings import (
    BkCmdbConfig,
    ClusterSettings,
    CmdbSettings,
    InstanceSettings,
    Settings,
    SyncSettings,
)
from synchronizer.simulator.nodes import node_ip

from .common import (
    PYTHON,
    ROOT,
    ProcessError,
    SimProcess,
    drop_database,
    fresh_database,
    machine,
    median,
    percentile,
)

CLUSTER = "bench"
BIZ = 2
PODS_PER_NODE = 40
CEILING_REQUESTS = 40
CEILING_CONCURRENCY = 4
LIMIT = 200
"""bk-cmdb's most pods (and namespaces, workloads) per write request."""
RESULTS = ROOT / "bench" / "results-bkcmdb.json"
log = logging.getLogger("bench.bkcmdb")


class BkSimProcess:
    """`bench.bksimproc` in a process of its own."""

    def __init__(self, hosts: int) -> None:
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives with the process)
            prefix="bench-bksim-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([PYTHON, "-m", "bench.bksimproc", "--hosts", str(hosts)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise ProcessError(f"bk-cmdb simulator did not start: "
                               f"{Path(self._log.name).read_text()}")
        info = json.loads(line)
        self.url: str = info["url"]
        self.control: str = info["control"]

    async def log(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=300) as http:
            return dict((await http.get(f"{self.control}/bench/log")).json())

    async def reset(self) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            (await http.post(f"{self.control}/bench/reset")).raise_for_status()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def settings(dsn: str, server: str, bk_url: str | None, period: float) -> Settings:
    bkcmdb = None if bk_url is None else BkCmdbConfig(
        url=bk_url, auth="direct", app_secret=SecretStr(""), rate=1000, burst=1000,
        period=period, timeout=120)
    return Settings.model_construct(
        instance=InstanceSettings.model_construct(id="bench", address="127.0.0.1", port=0,
                                                  metric_port=0),
        zookeeper=None, cmdb=CmdbSettings.model_construct(dsn=SecretStr(dsn)),
        sync=SyncSettings(), clusters=[ClusterSettings(id=CLUSTER, biz_id=BIZ, server=server)],
        bkcmdb=bkcmdb)


async def caught_up(instance: Instance, version: int) -> None:
    supervisor = await instance.controller.wait_owned(ClusterId(CLUSTER))
    await supervisor.wait_synced()
    for reconciler in supervisor.reconcilers.values():
        await reconciler.caught_up(version)


class Pushes:
    """Every push's start, end and report (Pusher.push wrapped, in this process only)."""

    def __init__(self) -> None:
        self.done: list[tuple[float, float, PushReport]] = []
        original = Pusher.push

        async def push(pusher: Pusher, target: Any, **kw: Any) -> PushReport:
            start = time.perf_counter()
            report = await original(pusher, target, **kw)
            self.done.append((start, time.perf_counter(), report))
            return report
        Pusher.push = push  # type: ignore[method-assign]


async def settled(instance: Instance) -> None:
    """Two more pushes, the last one clean with nothing owed."""
    service = instance.bkcmdb
    assert service is not None
    board = service.board
    start = board.clusters[CLUSTER].pushes if CLUSTER in board.clusters else 0

    def done() -> bool:
        st = board.clusters.get(CLUSTER)
        return (st is not None and st.pushes >= start + 2 and not st.last_error
                and all(r in WAITING for r in st.pending_by_reason))
    await service.wait(done)


def fill(objects: dict[str, int], requests: dict[str, int], route: str) -> float:
    return objects.get(route, 0) / max(1, requests.get(route, 0)) / LIMIT


async def ceiling(url: str) -> float:
    """Pod create requests of 200 pods per second the simulator sustains (then cleaned up)."""
    cfg = BkCmdbSettings(url=url, auth="direct", rate=100_000, burst=100_000, timeout=120)
    async with BkCmdbClient(cfg) as client:
        cid = await client.kube.create_cluster(ClusterSpec(uid="ceiling", name="ceiling",
                                                           biz_id=BIZ))
        (ns,) = await client.kube.batch_create_namespaces(BIZ, [NamespaceSpec(
            cluster_id=cid, name="c")])
        host = (await client.topology.find_hosts(BIZ, [node_ip(0)]))[node_ip(0)].id
        (node,) = await client.kube.batch_create_nodes(BIZ, [NodeSpec(
            cluster_id=cid, host_id=host, name="n", internal_ip=(node_ip(0),))])
        (wl,) = await client.kube.batch_create_workloads(BIZ, "deployment", [WorkloadSpec(
            kind="deployment", namespace_id=ns, name="w")])
        made: list[int] = []
        serial = 0
        left = CEILING_REQUESTS

        async def worker() -> int:
            nonlocal serial, left
            n = 0
            while left > 0:
                left -= 1
                batch = []
                for _ in range(LIMIT):
                    serial += 1
                    batch.append(PodSpec(
                        biz_id=BIZ, cluster_id=cid, namespace_id=ns, node_id=node,
                        host_id=host, ref_kind="deployment", ref_id=wl, name=f"p{serial}",
                        operator=("bench",), containers=(ContainerSpec(
                            name="c", image="i", container_uid=f"u{serial}"),)))
                made.extend(await client.kube.batch_create_pods(batch))
                n += 1
            return n
        began = time.perf_counter()
        counts = await asyncio.gather(*(worker() for _ in range(CEILING_CONCURRENCY)))
        rate = sum(counts) / (time.perf_counter() - began)
        await client.kube.delete_pods(BIZ, made)
        await client.kube.delete_workloads(BIZ, "deployment", [wl])
        await client.kube.delete_nodes(BIZ, [node])
        await client.kube.delete_namespaces(BIZ, [ns])
        await client.kube.delete_clusters(BIZ, [cid])
    return rate


async def one_run(args: argparse.Namespace, n: int) -> dict[str, Any]:
    nodes = max(1, args.pods // PODS_PER_NODE)
    db = f"bench_bkcmdb_{n}"
    dsn = fresh_database(db)
    k8s = SimProcess(seed=n + 1)
    bk = BkSimProcess(hosts=nodes)
    pushes = Pushes()
    try:
        k8s.admin("POST", CLUSTER, {"bookmark_interval": 1.0})
        k8s.admin("POST", f"{CLUSTER}/populate", {
            "pods": args.pods, "namespaces": 8, "seed": n + 1, "nodes": nodes,
            "workloads": max(4, args.pods // 25)})
        version = int(k8s.stats(CLUSTER)["resourceVersion"])
        stop = asyncio.Event()
        instance = Instance(settings(dsn, k8s.cluster_url(CLUSTER), None, args.period))
        task = asyncio.create_task(instance.run(stop))
        await caught_up(instance, version)
        stop.set()
        await task

        # -- the initial push ---------------------------------------------------------------------
        await bk.reset()
        stop = asyncio.Event()
        instance = Instance(settings(dsn, k8s.cluster_url(CLUSTER), bk.url, args.period))
        task = asyncio.create_task(instance.run(stop))
        try:
            await settled(instance)
            start, end, first = pushes.done[0]
            seconds = end - start
            counts = await bk.log()
            objects = first.changed
            initial = {
                "seconds": seconds, "objects": objects, "requests": first.requests,
                "objects_per_second": objects / seconds,
                "requests_per_second": first.requests / seconds,
                "pod_batch_fill": fill(counts["objects"], counts["requests"],
                                       "batch_create_kube_pod"),
                "created": dict(first.created)}
            cap = await ceiling(bk.url)

            # -- steady push under churn ----------------------------------------------------------
            await bk.reset()
            before = len(pushes.done)
            events = int(args.rate * args.seconds)
            began = time.time()
            k8s.http.post(f"{k8s.control}/bench/{CLUSTER}/timed_churn", json={
                "events": events, "rate": args.rate, "seed": n, "mode": "scheduled"}
            ).raise_for_status()
            changes = await asyncio.to_thread(k8s.timed_churn_wait, CLUSTER)
            await caught_up(instance, int(k8s.stats(CLUSTER)["resourceVersion"]))
            await settled(instance)
            counts = await bk.log()
        finally:
            stop.set()
            await task
        lags = lag(changes, counts["pods"])
        durations = sorted(end - start for start, end, _ in pushes.done[before:])
        modes = [str(r.mode) for _, _, r in pushes.done[before:]]
        churn_seconds = changes[-1][2] - began if changes else args.seconds
        objects = sum(v for k, v in counts["objects"].items()
                      if k.startswith(("batch_create", "batch_delete", "batch_update")))
        requests = sum(counts["requests"].values())
        steady = {
            "changes": len(changes), "seconds": churn_seconds,
            "objects_per_second": objects / churn_seconds,
            "requests_per_second": requests / churn_seconds,
            "pod_batch_fill": fill(counts["objects"], counts["requests"],
                                   "batch_create_kube_pod"),
            "pod_delete_fill": fill(counts["objects"], counts["requests"],
                                    "batch_delete_kube_pod"),
            "lag_p50": percentile(lags, 0.5) if lags else None,
            "lag_p99": percentile(lags, 0.99) if lags else None,
            "lag_samples": len(lags), "unmatched": len(changes) - len(lags),
            "pushes": len(durations), "push_seconds_p50": percentile(durations, 0.5),
            "push_seconds_max": durations[-1] if durations else None,
            "sweeps": modes.count("sweep"), "fulls": modes.count("full")}
        return {"initial": initial, "ceiling_requests_per_second": cap,
                "limit_objects_per_second": cap * LIMIT, "steady": steady}
    finally:
        k8s.close()
        bk.close()
        drop_database(db)


def lag(changes: list[tuple[int, str, float]], created: list[list[Any]]) -> list[float]:
    """Per change, seconds until bk-cmdb applied the next create of that pod (sorted)."""
    by_pod: dict[str, list[float]] = {}
    for ns, name, t in created:
        by_pod.setdefault(f"{ns}/{name}", []).append(float(t))
    out = []
    for _, key, t0 in changes:
        later = [t for t in by_pod.get(key, ()) if t >= t0]
        if later:
            out.append(min(later) - t0)
    return sorted(out)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(path: str) -> float:
        values = []
        for run in runs:
            node: Any = run
            for part in path.split("."):
                node = node[part]
            values.append(float(node))
        return median(values)
    keys = ["initial.seconds", "initial.objects", "initial.objects_per_second",
            "initial.requests_per_second", "initial.pod_batch_fill",
            "ceiling_requests_per_second", "limit_objects_per_second",
            "steady.objects_per_second", "steady.requests_per_second",
            "steady.pod_batch_fill", "steady.pod_delete_fill", "steady.lag_p50",
            "steady.lag_p99"]
    out = {k: med(k) for k in keys}
    out["initial.ratio_objects"] = out["initial.objects_per_second"] / out[
        "limit_objects_per_second"]
    out["initial.ratio_requests"] = out["initial.requests_per_second"] / out[
        "ceiling_requests_per_second"]
    out["steady.ratio_objects"] = out["steady.objects_per_second"] / out[
        "limit_objects_per_second"]
    out["steady.ratio_requests"] = out["steady.requests_per_second"] / out[
        "ceiling_requests_per_second"]
    return out


async def main_async(args: argparse.Namespace) -> int:
    runs = []
    for n in range(args.runs):
        result = await one_run(args, n)
        print(json.dumps(result), flush=True)
        runs.append(result)
    summary = summarise(runs)
    doc = {"pods": args.pods, "rate": args.rate, "seconds": args.seconds,
           "period": args.period, "runs": runs, "median": summary, "machine": machine(),
           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.write:
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    for key, value in summary.items():
        print(f"{key:32} {value:,.3f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="pod changes per second")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of churn")
    p.add_argument("--period", type=float, default=1.0, help="bkcmdb.period of the instance")
    p.add_argument("--no-write", dest="write", action="store_false",
                   help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncmy").setLevel(logging.ERROR)  # "table exists" on every open
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
