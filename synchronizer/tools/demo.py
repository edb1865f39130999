"""`demo`: the whole pipeline on embedded defaults, on a machine with nothing but Python.

What runs, all in this process: the simulated Kubernetes API server (one cluster `demo`
with `--pods` realistic Pods over several namespaces, about 60 % of them annotated with a
CMDB set/module), churn at `--rate` changes per second (creates, updates, deletes,
re-creates and module moves), and one standalone `Instance` writing to an SQLite file
(a temporary one unless `--db`), serving /status, the status page and /metrics.

Why in-process and not a simulator subprocess: measured on the 2-core reference machine,
the first full sync of 20,000 Pods took 5.6-6.8 s in-process and 6.2-6.4 s with the
simulator in a process of its own (noise dominates): the simulator serves stored,
serialised Pods (a page is a bytes join), so nearly all the CPU is the instance's parsing,
projecting and writing either way. In-process spares a second interpreter, a port
handshake and an admin API round trip to stop churn and read the truth at the end.

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

from reconciler import ClusterId
from synchronizer.settings import (
    ClusterSettings,
    CmdbSettings,
    InstanceSettings,
    Settings,
    SyncSettings,
)

from .check import PROG
from .demo_view import FirstSyncBar, RowReader, Snapshot, live_view, plain_line
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
            row = conn.execute("SELECT MAX(resource_version) FROM pods WHERE cluster_id = ?",
                               (CLUSTER,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not a CMDB yet (or not SQLite): the store will say so when it opens
    return int(row[0] or 0)


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
        self._instance_cls = Instance
        self.instance: Instance | None = None
        self.task: asyncio.Task[None] | None = None
        self.settings: Settings | None = None
        self.stop = asyncio.Event()
        self.interrupted = asyncio.Event()
        self.reader: RowReader | None = None
        self.db: Path | None = None
        self.started = 0.0
        self._counts: tuple[dict[str, int], list[tuple[str, str, int]]] = ({}, [])

    # -- set-up -----------------------------------------------------------------------

    async def start(self, db: Path) -> None:
        """Populate and serve the simulator, start churn and the instance."""
        from synchronizer.simulator import populate

        self.db = db
        await populate(self.cluster, pods=self.args.pods, namespaces=NAMESPACES,
                       annotated_fraction=ANNOTATED, rng=random.Random(1))
        await self.sim.start("127.0.0.1", 0)
        self.settings = demo_settings(self.sim.url_for(CLUSTER), db, self.args)
        self.instance = self._instance_cls(self.settings)
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
        if self.args.rate > 0:
            self.sim.start_churn(CLUSTER, events=None, rate=self.args.rate, seed=2)

    @property
    def urls(self) -> tuple[str, str]:
        """The status page and /metrics URLs of the running instance."""
        assert self.instance is not None and self.settings is not None
        host = self.settings.instance.address
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        bound = self.instance.http.bound
        return f"http://{host}:{bound[0]}/", f"http://{host}:{bound[-1]}/metrics"

    # -- watching it run ----------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """Gather the view's numbers: reconciler status, metrics, simulator, row counts."""
        assert self.instance is not None and self.reader is not None
        loop = asyncio.get_running_loop()
        elapsed = loop.time() - self.started
        snap = Snapshot(elapsed=elapsed, pods_in_cluster=len(self.cluster),
                        cluster_version=self.cluster.resource_version)
        if self.args.duration is not None:
            snap.remaining = max(0.0, self.args.duration - elapsed)
        snap.status_url, snap.metrics_url = self.urls
        rec = self.instance.controller.reconciler(ClusterId(CLUSTER))
        if rec is not None:
            st = rec.status
            snap.state, snap.full_syncs, snap.events = str(st.phase), st.full_syncs, st.events
            snap.events_per_second = st.rate.rate(loop.time())
            snap.parked, snap.queued, snap.last_error = rec.parked, rec.queued, st.last_error
        snap.lag = self.instance.metrics.registry.get_sample_value(
            "bkcmdb_sync_lag_seconds", {"cluster": CLUSTER})
        progress = self.sim.churn_progress(CLUSTER)
        if progress is not None:
            snap.churn = {k: getattr(progress, k) for k in ("created", "updated", "moved",
                                                           "deleted", "recreated")}
        with contextlib.suppress(Exception):  # a locked or busy file: keep the last counts
            self._counts = await asyncio.to_thread(self.reader.counts, CLUSTER)
        states, snap.modules = self._counts
        snap.active, snap.deleted = states.get("Active", 0), states.get("Deleted", 0)
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
        return snap.full_syncs > 0

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
        self.sim.stop_churn(CLUSTER)
        await asyncio.sleep(0)  # let the cancelled churn task finish: no change after this
        target = self.cluster.resource_version
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT):
                while True:
                    rec = self.instance.controller.reconciler(ClusterId(CLUSTER))
                    if rec is not None:
                        await rec.wait_synced(0)
                        await rec.caught_up(target)
                        return True
                    await asyncio.sleep(0.1)  # the reconciler is being (re)started
        except TimeoutError:
            return False

    async def stop_instance(self) -> None:
        """Stop the instance gracefully (reconcilers flushed, store closed); idempotent."""
        self.stop.set()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task

    async def shutdown(self) -> None:
        """Stop the instance, close the reader, stop the simulator."""
        await self.stop_instance()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        await self.sim.stop()


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
    """The parseable summary: `verify: missing=0 stale=0 extra=0 pods=2000 result=ok`."""
    pods = sum(c.listed for c in report.clusters)
    result = {0: "ok", 1: "drift"}.get(report.exit_code, "error")
    return (f"verify: missing={report.total('missing')} stale={report.total('stale')} "
            f"extra={report.total('extra')} pods={pods} result={result}")


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
    print(f"demo: {args.pods} pods in cluster {CLUSTER!r}, churn {args.rate:g}/s, cmdb {db}; "
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
    return 0 if report.exit_code == 0 else 1
