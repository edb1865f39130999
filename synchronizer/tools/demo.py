"""`demo`: the whole pipeline on embedded defaults, on a machine with nothing but Python.

What runs, all in this process: the simulated Kubernetes API server (one cluster `demo`
with `--pods` realistic Pods over several namespaces, about 60 % of them annotated with a
CMDB set/module, owned by Deployments, StatefulSets, DaemonSets, Jobs and CronJobs on a
few dozen Nodes), churn of every kind (Pods at `--rate` changes per second, rollouts and
scaling, node cordons, namespaces coming and going) plus status-only noise that must write
nothing (node heartbeats, ready-replica counts, restart counts), and one standalone
`Instance` writing every kind to an SQLite file (a temporary one unless `--db`), serving
/status, the status page and /metrics.

Why in-process and not a simulator subprocess: measured on the 2-core reference machine,
the first full sync of 20,000 Pods took 5.6-6.8 s in-process and 6.2-6.4 s with the
simulator in a process of its own (noise dominates): the simulator serves stored,
serialised Pods (a page is a bytes join), so nearly all the CPU is the instance's parsing,
projecting and writing either way. In-process spares a second interpreter, a port
handshake and an admin API round trip to stop churn and read the truth at the end.

`--bkcmdb` adds the bk-cmdb simulator as a second sink (`demo_bkcmdb`): the instance pushes
the tables to it, the view shows what it holds, and the demo ends with `verify --bkcmdb`.

`--duration S` ends the demo by itself: churn stops, the demo awaits the instance's
`caught_up(version)` for the cluster's last version (bounded), stops the instance
gracefully, then runs `verify` against the simulator and the SQLite file and exits 0 when
they match, 1 on drift. Ctrl-C (or SIGTERM) stops cleanly at any time and exits 0.
The bind address is 127.0.0.1, or `BKCMDB_INSTANCE__ADDRESS` (e.g. 0.0.0.0 in a container).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sqlite3
import sys
import tempfile
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from reconciler import ClusterId, ClusterSupervisor
from synchronizer.settings import (
    ClusterSettings,
    CmdbSettings,
    InstanceSettings,
    Settings,
    SyncSettings,
)

from .check import PROG
from .demo_bkcmdb import DemoBkCmdb
from .demo_bkcmdb import final_line as bk_final_line
from .demo_crd import HOME, crd_settings, prepare_home, register_and_follow
from .demo_view import TABLES, FirstSyncBar, KindLine, RowReader, Snapshot, live_view, plain_line
from .verify import Report, VerifyError, render, run_verify

CLUSTER = "demo"
BIZ_ID = 2
NAMESPACES = 6
ANNOTATED = 0.6
CATCH_UP_TIMEOUT = 60.0
"""Seconds the final catch-up may take before the demo verifies anyway (and reports drift)."""
START_TIMEOUT = 30.0
"""Seconds for the instance to bind its ports and open the store."""
PLAIN_EVERY = 3.0
"""Seconds between plain progress lines."""
HEARTBEAT_INTERVAL = 10.0
"""Seconds between two heartbeats of one Node (real kubelets: 10 to 60)."""
TABLE_OF = {"pods": "pods", "nodes": "nodes", "namespaces": "namespaces",
            "deployments": "workloads", "statefulsets": "workloads", "daemonsets": "workloads",
            "jobs": "workloads", "cronjobs": "workloads"}
"""The CMDB table each synced resource (simulator ids, group dropped) is written to."""
log = logging.getLogger("synchronizer.demo")


def demo_settings(server: str, db: Path, args: argparse.Namespace) -> Settings:
    """The embedded configuration: one cluster, standalone, SQLite.

    Built with `model_construct` so the user's `BKCMDB_*` environment (meant for `run`)
    cannot point the demo at a production CMDB, and so port 0 (any free port) is allowed.
    """
    address = os.environ.get("BKCMDB_INSTANCE__ADDRESS", "127.0.0.1")
    return Settings.model_construct(
        instance=InstanceSettings.model_construct(
            id="demo", address=address, port=args.port, metric_port=args.metric_port),
        zookeeper=None,
        cmdb=CmdbSettings.model_construct(dsn=SecretStr(f"sqlite:///{db.absolute()}")),
        sync=SyncSettings(full_sync_interval=60.0),
        clusters=[ClusterSettings(id=CLUSTER, biz_id=BIZ_ID, server=server)],
    )


def _stored_version(db: Path) -> int:
    """The highest resource_version of the demo cluster in an existing file (0: none)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            found = [conn.execute(f"SELECT MAX(resource_version) FROM {table} WHERE"
                                  " cluster_id = ?", (CLUSTER,)).fetchone()[0] or 0
                     for table in TABLES]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not a CMDB yet (or an older one): the store will migrate it when it opens
    return int(max(found))


def _problem(args: argparse.Namespace) -> str | None:
    if args.pods < 0:
        return "--pods must be 0 or more"
    if args.rate < 0:
        return "--rate must be 0 or more"
    if args.duration is not None and args.duration <= 0:
        return "--duration must be more than 0 seconds"
    for name in ("port", "metric_port"):
        if not 0 <= getattr(args, name) <= 65535:
            return f"--{name.replace('_', '-')} must be a port number (0 picks a free one)"
    return None


class Demo:
    """One demo run: simulator, instance, view, and the final check."""

    def __init__(self, args: argparse.Namespace, console: Console, plain: bool) -> None:
        from synchronizer.app import Instance
        from synchronizer.simulator import Simulator

        self.args = args
        self.console = console
        self.plain = plain
        self.sim = Simulator(bookmark_interval=1.0, seed=1)
        # A reused --db holds versions of an earlier run; a simulated cluster starting
        # below them would look like an etcd restore (every row "newer" than the truth).
        start_rv = _stored_version(Path(args.db)) + 1 if args.db else 1
        self.cluster = self.sim.add_cluster(CLUSTER, start_rv=start_rv)
        self.home = prepare_home(self.sim) if getattr(args, "crd", False) else None
        self._follow: asyncio.Task[None] | None = None
        self._instance_cls = Instance
        self.instance: Instance | None = None
        self.task: asyncio.Task[None] | None = None
        self.settings: Settings | None = None
        self.stop = asyncio.Event()
        self.interrupted = asyncio.Event()
        self.reader: RowReader | None = None
        self.db: Path | None = None
        self.started = 0.0
        self._counts: dict[str, dict[str, int]] = {}
        self._groups: tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]] = ([], [])
        self.bk = DemoBkCmdb(BIZ_ID) if getattr(args, "bkcmdb", False) else None
        """The bk-cmdb simulator, with `--bkcmdb` (`demo_bkcmdb`)."""

    # -- set-up -----------------------------------------------------------------------

    async def start(self, db: Path) -> None:
        """Populate and serve the simulator, start churn and the instance."""
        from synchronizer.simulator import populate

        self.db = db
        pods = self.args.pods
        await populate(self.cluster, pods=pods, namespaces=NAMESPACES,
                       annotated_fraction=ANNOTATED, rng=random.Random(1),
                       nodes=max(3, min(200, pods // 40)) if pods else 0,
                       workloads=max(4, pods // 25) if pods else 0)
        await self.sim.start("127.0.0.1", 0)
        self.settings = demo_settings(self.sim.url_for(CLUSTER), db, self.args)
        if self.bk is not None:
            await self.bk.start(self.cluster)
            self.settings = self.bk.settings(self.settings)
        self.instance = self._instance_cls(self.settings if self.home is None else
                                           crd_settings(self.settings, self.sim.url_for(HOME)))
        task = self.task = asyncio.create_task(self.instance.run(self.stop), name="instance")
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        async with asyncio.timeout(START_TIMEOUT):
            while self.instance.store is None or not self.instance.http.bound:
                if task.done():
                    task.result()  # raises the instance's error (a port taken)
                    raise RuntimeError("the instance stopped during start-up")
                await asyncio.sleep(0.05)
        self.reader = RowReader(str(db))
        if self.home is not None:
            self._follow = asyncio.create_task(
                register_and_follow(self.sim, self.home, CLUSTER, BIZ_ID), name="synccluster")
        rate = self.args.rate
        if rate > 0:
            churn = self.sim.controllers(CLUSTER, seed=2)
            churn.start("pods", rate=rate)
            churn.start("workloads", rate=max(0.2, rate / 10))
            churn.start("nodes", rate=max(0.05, rate / 50))
            churn.start("namespaces", rate=max(0.02, rate / 200))
            churn.start("heartbeats", interval=HEARTBEAT_INTERVAL)
            churn.start("workload_status", rate=max(0.5, rate / 5))
            churn.start("pod_restarts", rate=max(0.5, rate / 5))

    @property
    def urls(self) -> tuple[str, str]:
        """The status page and /metrics URLs of the running instance."""
        assert self.instance is not None and self.settings is not None
        host = self.settings.instance.address
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        bound = self.instance.http.bound
        return f"http://{host}:{bound[0]}/", f"http://{host}:{bound[-1]}/metrics"

    # -- watching it run ----------------------------------------------------------------

    def _supervisor(self) -> ClusterSupervisor | None:
        assert self.instance is not None
        return self.instance.controller.supervisor(ClusterId(CLUSTER))

    async def snapshot(self) -> Snapshot:
        """Gather the view's numbers: reconciler status, metrics, simulator, row counts."""
        assert self.instance is not None and self.reader is not None
        loop = asyncio.get_running_loop()
        elapsed = loop.time() - self.started
        snap = Snapshot(elapsed=elapsed, cluster_version=self.cluster.resource_version)
        if self.args.duration is not None:
            snap.remaining = max(0.0, self.args.duration - elapsed)
        snap.status_url, snap.metrics_url = self.urls
        counts = self.cluster.counts()
        for resource, table in TABLE_OF.items():
            found = counts.get(resource, 0) + counts.get(f"{resource}.apps", 0) + counts.get(
                f"{resource}.batch", 0)
            snap.kinds[table].in_cluster += found
        sup = self._supervisor()
        if sup is not None:
            from synchronizer.status import cluster_state

            snap.state = cluster_state(sup, None)
            errors = []
            for resource, rec in sup.reconcilers.items():
                st, line = rec.status, snap.kinds[TABLE_OF[resource]]
                line.events += st.events
                line.state = str(st.phase) if line.state in ("starting", "watching") \
                    else line.state
                snap.full_syncs += st.full_syncs
                snap.synced_kinds += st.full_syncs > 0
                snap.events_per_second += st.rate.rate(loop.time())
                snap.parked += rec.parked
                snap.queued += rec.queued
                if st.last_error:
                    errors.append(f"{resource}: {st.last_error}")
            snap.total_kinds = len(sup.reconcilers)
            snap.last_error = "; ".join(errors) or sup.status.last_error
        snap.lag = self.instance.metrics.registry.get_sample_value(
            "bkcmdb_sync_lag_seconds", {"cluster": CLUSTER, "kind": "pods"})
        churn = self.sim.controllers(CLUSTER)
        snap.real = sum(churn.counts.real.values())
        snap.noise = sum(churn.counts.noise.values())
        with contextlib.suppress(Exception):  # a locked or busy file: keep the last counts
            self._counts = await asyncio.to_thread(self.reader.counts, CLUSTER)
            self._groups = await asyncio.to_thread(self.reader.groups, CLUSTER)
        for table, states in self._counts.items():
            line = snap.kinds.setdefault(table, KindLine())
            line.active, line.deleted = states.get("Active", 0), states.get("Deleted", 0)
        snap.workloads, snap.modules = self._groups
        if self.bk is not None:
            snap.bkcmdb = self.bk.line(self.instance, CLUSTER, loop.time())
        return snap

    @property
    def crashed(self) -> bool:
        """True when the instance's task ended although nobody asked it to stop."""
        return self.task is not None and self.task.done() and not self.stop.is_set()

    async def _until_end(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when the demo should end (duration, Ctrl-C, a crash)."""
        assert self.instance is not None
        loop = asyncio.get_running_loop()
        end = None if self.args.duration is None else self.started + self.args.duration
        timeout = seconds if end is None else max(0.0, min(seconds, end - loop.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.interrupted.wait()
        return (self.interrupted.is_set() or self.crashed
                or (end is not None and loop.time() >= end))

    def _first_sync_done(self, snap: Snapshot) -> bool:
        return snap.total_kinds > 0 and snap.synced_kinds == snap.total_kinds

    async def watch(self) -> None:
        """Show progress until the duration ends, Ctrl-C, or the instance stops."""
        if self.plain:
            while True:
                snap = await self.snapshot()
                print(plain_line(snap, self._first_sync_done(snap)), flush=True)
                if await self._until_end(PLAIN_EVERY):
                    return
        bar: FirstSyncBar | None = FirstSyncBar()
        with Live(console=self.console, refresh_per_second=2, transient=False) as live:
            while True:
                snap = await self.snapshot()
                if bar is not None and self._first_sync_done(snap):
                    bar = None
                live.update(live_view(snap, bar))
                if await self._until_end(0.5):
                    return

    # -- the end ------------------------------------------------------------------------

    async def catch_up(self) -> bool:
        """Stop churn, then await the instance having written the cluster's last version."""
        assert self.instance is not None
        await self.sim.controllers(CLUSTER).aclose()  # no change after this
        target = self.cluster.resource_version
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT):
                sup = await self.instance.controller.wait_running(ClusterId(CLUSTER))
                await sup.wait_synced()
                for rec in sup.reconcilers.values():
                    await rec.caught_up(target)
        except TimeoutError:
            return False
        return self.bk is None or await self.bk.settle(self.instance, CLUSTER)

    async def stop_instance(self) -> None:
        """Stop the instance gracefully (reconcilers flushed, store closed); idempotent."""
        self.stop.set()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task

    async def shutdown(self) -> None:
        """Stop the instance, close the reader, stop the simulator."""
        if self._follow is not None:
            self._follow.cancel()
            await asyncio.gather(self._follow, return_exceptions=True)
        await self.stop_instance()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        await self.sim.stop()
        if self.bk is not None:
            await self.bk.stop()


def _install_signals(demo: Demo) -> None:
    """First Ctrl-C/SIGTERM: stop cleanly. A second Ctrl-C: the default (abort)."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        demo.interrupted.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first)


def _setup_view_logging(console: Console, level: str) -> None:
    """Route log lines through the live console so they scroll above the view."""
    root = logging.getLogger()
    root.handlers[:] = [RichHandler(console=console, show_path=False, markup=False,
                                    log_time_format="%H:%M:%S")]
    root.setLevel(level.upper())


def _final_line(report: Report) -> str:
    """The parseable summary:
    `verify: missing=0 stale=0 extra=0 pods=2000 objects=2400 result=ok`."""
    objects = sum(c.listed for c in report.clusters)
    pods = sum(c.listed_by_kind.get("pods", 0) for c in report.clusters)
    result = {0: "ok", 1: "drift"}.get(report.exit_code, "error")
    return (f"verify: missing={report.total('missing')} stale={report.total('stale')} "
            f"extra={report.total('extra')} pods={pods} objects={objects} result={result}")


async def demo_command(args: argparse.Namespace) -> int:
    """The `demo` command; returns the exit code (0 no drift or stopped, 1 drift/failure)."""
    problem = _problem(args)
    if problem:
        print(f"{PROG}: demo: {problem}", file=sys.stderr)
        return 2
    plain = bool(args.plain) or not sys.stdout.isatty()
    console = Console()
    if not plain:
        _setup_view_logging(console, getattr(args, "log_level", "INFO"))
    demo = Demo(args, console, plain)
    _install_signals(demo)
    with tempfile.TemporaryDirectory(prefix="bkcmdb-demo-") as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "cmdb.db"
        try:
            return await _run(demo, db)
        finally:
            await demo.shutdown()


async def _run(demo: Demo, db: Path) -> int:
    """Start, watch, catch up, stop the instance, verify; the caller shuts down."""
    args = demo.args
    try:
        await demo.start(db)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"{PROG}: demo: cannot start: {exc or 'timed out'}", file=sys.stderr)
        return 1
    status_url, metrics_url = demo.urls
    bk = f", bk-cmdb {demo.bk.sim.base_url}" if demo.bk is not None else ""
    print(f"demo: {args.pods} pods in cluster {CLUSTER!r}, churn {args.rate:g}/s, cmdb {db}{bk}; "
          f"status page {status_url} metrics {metrics_url}", flush=True)
    await demo.watch()
    if demo.crashed:
        print(f"{PROG}: demo: the instance stopped unexpectedly", file=sys.stderr)
        return 1
    if demo.interrupted.is_set():
        print("demo: interrupted; stopping", flush=True)
        return 0
    print("demo: churn stopped; waiting for the instance to catch up", flush=True)
    if not await demo.catch_up():
        print(f"demo: not caught up within {CATCH_UP_TIMEOUT:g} s", flush=True)
    await demo.stop_instance()
    assert demo.settings is not None
    try:
        report = await run_verify(demo.settings)
    except VerifyError as exc:
        print(f"{PROG}: demo: verify: {exc}", file=sys.stderr)
        return 1
    if not demo.plain:
        render(report, demo.console)
    print(_final_line(report), flush=True)
    if args.db:
        print(f"demo: the CMDB is kept in {db}", flush=True)
    if demo.bk is not None:
        try:
            bk_report = await demo.bk.verify(demo.settings)
        except VerifyError as exc:
            print(f"{PROG}: demo: verify --bkcmdb: {exc}", file=sys.stderr)
            return 1
        if not demo.plain:
            render(bk_report, demo.console, title="bk-cmdb drift")
        print(bk_final_line(bk_report), flush=True)
        return 0 if report.exit_code == 0 and bk_report.exit_code == 0 else 1
    return 0 if report.exit_code == 0 else 1
