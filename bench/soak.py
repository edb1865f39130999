"""Soak: a fleet of real instances under churn and random faults for a long time, then
proof that nothing was lost, duplicated or rolled back, and that memory stayed bounded.

What runs (all real processes on loopback, none of them shared with anything else):

- a private ZooKeeper (tests/zkserver.py, tick 200 ms) and a private MariaDB
  (tests/mariadbserver.py) with the CMDB's tables and the audit trigger of the tests
  (every change of a stored row is recorded, so "a version went backwards" is checkable
  over the whole run);
- the simulator process with `--clusters` clusters of `--pods` pods, each changing
  `--rate` times a second for the whole run (creates, updates, deletes, re-creates);
- `--instances` synchronizer instances (`python -m synchronizer run`) on ZooKeeper.

Then, for `--minutes`, one fault at a time, chosen at random, each followed by a wait
until the fleet has caught up again, then a random quiet gap:

| fault | what is done |
| --- | --- |
| `sigkill` | SIGKILL an instance; restart it (same id) one to four seconds later |
| `sigstop` | SIGSTOP an instance for 0.3 to 2 session timeouts, then SIGCONT |
| `mariadb_restart` | SIGKILL (a crash) or SIGTERM MariaDB; start it again on the same data |
| `zk_restart` | stop ZooKeeper for 0.2 to 2 session timeouts; start it on the same data |
| `drop_watches` | reset every watch stream of one cluster (TCP RST) |
| `compaction` | compact one cluster's history and drop its watches (410 Gone, a relist) |

Time to converge after a fault is measured from the moment the fault is over (the
instance restarted or resumed, the server back, the streams reset) until the fleet has
caught up past that moment: each cluster listed by exactly one instance, watching, having
received a change newer than the simulator's resourceVersion of that moment (so its
stream works again: a relist or reconnect is done), with nothing queued -- the "lag is
zero" reading of /status, polled every 0.25 s while churn goes on (at `--rate`, the next
change comes within 1/rate s, which the figure includes).

At the end: faults stop, churn stops, the fleet settles, and then (assertions; the exit
status is 1 if one fails) the CMDB equals the simulator's truth for every cluster, no
(cluster_id, uid) is stored twice, no stored version ever went backwards in the audit
history, every fault was followed by convergence, no instance's RSS (sampled from /proc
every second, across restarts) passed `--rss-limit-mib`, and the product's own `verify`
finds no drift. A report follows: faults by type with their convergence times, and the
peak RSS of each instance.

Usage (not part of `make test`; needs java, the Debian `zookeeper` and
`mariadb-server-core` packages, as the tests do):

    .venv/bin/python -m bench.soak                          # 30 minutes, 3 instances, 6 clusters
    .venv/bin/python -m bench.soak --minutes 3              # a short proof that it works
    .venv/bin/python -m bench.soak --minutes 120 --instances 5 --clusters 20 --json out.json
    .venv/bin/python -m bench.soak --faults sigkill,zk_restart --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "scaleout")]
from mariadbserver import MariaDbServer  # noqa: E402  (the tests' private servers)
from scaleout_oracles import converge, prepare_cmdb  # noqa: E402
from scaleout_support import Fleet, Instance, SimProcess, Statuses  # noqa: E402
from zkserver import ZkServer  # noqa: E402

FAULTS = ("sigkill", "sigstop", "mariadb_restart", "zk_restart", "drop_watches", "compaction")
CONVERGE_GUARD = 180.0
"""Seconds a fault may take to be caught up with before it counts as not converged."""
SETTLE_GUARD = 300.0
"""Seconds the final settle and table comparison may take."""
CAUGHT_UP_POLL = 0.25
"""Seconds between two looks at the fleet's /status while waiting to catch up."""
RSS_PERIOD = 1.0
"""Seconds between two RSS samples of every instance."""


@dataclass
class FaultRecord:
    """One injected fault and what followed."""

    kind: str
    detail: str
    at: float
    """Seconds since the soak began."""
    lasted: float
    """Seconds from injection until the fault was over."""
    converged: float | None = None
    """Seconds from the fault's end until the fleet had caught up (None: not in time)."""


@dataclass
class Soak:
    """The processes of one soak run and what was measured."""

    args: argparse.Namespace
    work: Path
    rng: random.Random
    zk: ZkServer | None = None
    db: MariaDbServer | None = None
    dsn: str = ""
    sim: SimProcess | None = None
    fleet: Fleet | None = None
    clusters: list[str] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    settle_seconds: float = 0.0

    # -- set-up and tear-down --------------------------------------------------------------

    async def setup(self) -> None:
        """Start ZooKeeper, MariaDB, the simulator and the instances; wait until settled."""
        args = self.args
        self.clusters = [f"c{i:02d}" for i in range(args.clusters)]
        self.zk = ZkServer(self.work / "zookeeper")
        await asyncio.to_thread(self.zk.start)
        self.db = MariaDbServer(self.work / "mariadb")
        await asyncio.to_thread(self.db.start)
        self.dsn = await prepare_cmdb(await asyncio.to_thread(self.db.create_database, "soak"))
        self.sim = await SimProcess.start(self.work, self.clusters, pods=args.pods,
                                          seed=args.seed)
        self.fleet = Fleet(
            tmp=self.work, sim=self.sim, dsn=self.dsn, zk_hosts=self.zk.hosts,
            zk_root="/soak", session_timeout=args.session_timeout, clusters=self.clusters,
            lease_ttl=3 * args.session_timeout,
            sync={"full_sync_interval": args.full_sync_interval, "backoff_max": 2})
        for n in range(args.instances):  # a rolling start: each joins a settled fleet
            await self.fleet.add(n)
            await self.fleet.settled(timeout=SETTLE_GUARD)

    async def teardown(self) -> None:
        """Stop everything that was started (instances first)."""
        if self.fleet is not None:
            await self.fleet.close()
        if self.sim is not None:
            await self.sim.close()
        if self.db is not None:
            await asyncio.to_thread(self.db.stop)
        if self.zk is not None:
            await asyncio.to_thread(self.zk.stop)

    # -- the run ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the faults began."""
        return time.monotonic() - self.started

    async def run(self) -> None:
        """Churn, faults until the time is up, then stop churning."""
        assert self.sim is not None
        await self.sim.churn_all(self.clusters, events=None, rate=self.args.rate,
                                 seed=self.args.seed)
        sampler = asyncio.create_task(self._sample_rss())
        self.started = time.monotonic()
        deadline = self.started + self.args.minutes * 60
        kinds = self.args.faults
        try:
            while time.monotonic() < deadline:
                kind = self.rng.choice(kinds)
                begun = self.elapsed()
                detail = await self.inject(kind)
                record = FaultRecord(kind, detail, round(begun, 1),
                                     round(self.elapsed() - begun, 2))
                record.converged = await self.caught_up()
                self.faults.append(record)
                print(f"[{begun:7.1f}s] {kind:16} {detail:34} over in {record.lasted:5.2f}s,"
                      f" caught up in {_fmt(record.converged)}", flush=True)
                gap = self.rng.uniform(*self.args.gap)
                await asyncio.sleep(min(gap, max(0.0, deadline - time.monotonic())))
        finally:
            await self.sim.stop_churn(self.clusters)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)

    async def inject(self, kind: str) -> str:
        """Make one fault happen and end; returns what was done, in a few words."""
        assert self.fleet is not None and self.sim is not None
        assert self.zk is not None and self.db is not None
        S = self.args.session_timeout
        if kind in ("sigkill", "sigstop"):
            victim = self.rng.choice(sorted(self.fleet.live(), key=lambda i: i.id))
            if kind == "sigkill":
                await victim.kill()
                await asyncio.sleep(self.rng.uniform(1.0, 4.0))  # the fault's duration
                await self._restart(victim)
                return f"{victim.id} killed, restarted"
            pause = self.rng.uniform(0.3, 2.0) * S
            victim.signal(signal.SIGSTOP)
            await asyncio.sleep(pause)  # the fault's duration
            victim.signal(signal.SIGCONT)
            return f"{victim.id} stopped {pause:.1f}s"
        if kind == "mariadb_restart":
            crash = self.rng.random() < 0.5
            await asyncio.to_thread(self.db.kill if crash else self.db.stop)
            down = self.rng.uniform(0.0, 2.0)
            await asyncio.sleep(down)  # the fault's duration
            await asyncio.to_thread(self.db.start)
            return f"{'crash' if crash else 'clean stop'}, down {down:.1f}s"
        if kind == "zk_restart":
            down = self.rng.uniform(0.2, 2.0) * S
            await asyncio.to_thread(self.zk.stop)
            await asyncio.sleep(down)  # the fault's duration
            await asyncio.to_thread(self.zk.start)
            return f"down {down:.1f}s (S = {S:g}s)"
        cluster = self.rng.choice(self.clusters)
        if kind == "compaction":
            await self.sim.admin("POST", cluster, "compact", {})
        dropped = await self.sim.admin("POST", cluster, "drop", {"reset": True})
        return f"{cluster}: {dropped['dropped']} streams reset"

    async def _restart(self, inst: Instance) -> None:
        await inst.close()  # releases its HTTP client; the process is already gone
        await inst.start()
        self.restarts[inst.id] = self.restarts.get(inst.id, 0) + 1

    async def caught_up(self) -> float | None:
        """Seconds until every cluster is caught up past the simulator as it is now (see
        the module docstring), or None if not within CONVERGE_GUARD."""
        assert self.fleet is not None and self.sim is not None
        targets = {c: int((await self.sim.admin("GET", c))["resourceVersion"]) + 1
                   for c in self.clusters}
        begun = time.monotonic()
        while time.monotonic() - begun < CONVERGE_GUARD:
            if behind(await self.fleet.statuses(), targets) is None:
                return round(time.monotonic() - begun, 2)
            await asyncio.sleep(CAUGHT_UP_POLL)  # other processes: a bounded poll
        return None

    async def _sample_rss(self) -> None:
        assert self.fleet is not None
        while True:
            for inst in self.fleet.live():
                self.peak_rss[inst.id] = max(self.peak_rss.get(inst.id, 0), inst.rss())
            await asyncio.sleep(RSS_PERIOD)  # the sampling period (watching, not waiting)

    # -- the end ---------------------------------------------------------------------------

    async def verdict(self) -> dict[str, Any]:
        """Quiescence, then the checks; returns {check: None if it held, else why}."""
        assert self.fleet is not None and self.sim is not None
        checks: dict[str, Any] = {}
        settle_began = time.monotonic()
        try:
            await self.fleet.settled(timeout=SETTLE_GUARD)
            await converge(self.sim, self.dsn, self.clusters, within=SETTLE_GUARD)
            checks["table equals truth, no duplicate, versions never went back"] = None
        except AssertionError as exc:
            checks["table equals truth, no duplicate, versions never went back"] = \
                str(exc).splitlines()[0]
        self.settle_seconds = round(time.monotonic() - settle_began, 1)
        slow = [f"{f.kind}@{f.at}s" for f in self.faults if f.converged is None]
        checks["every fault caught up with"] = None if not slow else f"not in time: {slow}"
        limit = self.args.rss_limit_mib * 2**20
        over = {k: v // 2**20 for k, v in self.peak_rss.items() if v > limit}
        checks[f"peak RSS under {self.args.rss_limit_mib} MiB"] = \
            None if not over else f"over: {over}"
        checks["`verify` finds no drift"] = await self._verify()
        return checks

    async def _verify(self) -> str | None:
        assert self.fleet is not None
        config = self.fleet.instances["sync-0"].config
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "synchronizer", "verify", "--config", str(config),
            "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode == 0:
            return None
        return f"exit {proc.returncode}: {(err or out).decode()[:300]}"


def behind(docs: Statuses, targets: dict[str, int]) -> str | None:
    """None when every cluster is listed by exactly one answering instance, watching, has
    received its target version and has nothing queued; otherwise the first reason."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for doc in docs.values():
        for c in (doc or {}).get("clusters", []):
            entries.setdefault(c["id"], []).append(c)
    for cluster, target in targets.items():
        found = entries.get(cluster, [])
        if len(found) != 1:
            return f"{cluster} listed {len(found)} times"
        c = found[0]
        if c["state"] != "watching" or (c["resume_version"] or 0) < target or c["queued"]:
            return f"{cluster}: {c['state']}, at {c['resume_version']} of {target}"
    return None


def _fmt(seconds: float | None) -> str:
    return "NOT IN TIME" if seconds is None else f"{seconds:.2f}s"


def report(soak: Soak, checks: dict[str, Any]) -> dict[str, Any]:
    """Print the report; return it as a document."""
    args = soak.args
    by_kind: dict[str, list[FaultRecord]] = {}
    for f in soak.faults:
        by_kind.setdefault(f.kind, []).append(f)
    print(f"\nsoak: {args.minutes:g} min, {args.instances} instances, {args.clusters} clusters"
          f" x {args.pods} pods, {args.rate:g} changes/s per cluster, seed {args.seed}")
    print(f"{len(soak.faults)} faults; final settle {soak.settle_seconds}s\n")
    print("| fault | count | caught up: min | median | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind in FAULTS:
        times = [f.converged for f in by_kind.get(kind, []) if f.converged is not None]
        count = len(by_kind.get(kind, []))
        if not count:
            continue
        cells = ([f"{min(times):.2f}s", f"{statistics.median(times):.2f}s",
                  f"{max(times):.2f}s"] if times else ["-", "-", "-"])
        print(f"| {kind} | {count} | " + " | ".join(cells) + " |")
    print("\n| instance | peak RSS | restarts |\n| --- | ---: | ---: |")
    for name in sorted(soak.peak_rss):
        print(f"| {name} | {soak.peak_rss[name] / 2**20:.0f} MiB |"
              f" {soak.restarts.get(name, 0)} |")
    print()
    for check, why in checks.items():
        print(f"{'PASS' if why is None else 'FAIL'}  {check}" + ("" if why is None
                                                                  else f": {why}"))
    return {"args": {k: v for k, v in vars(args).items() if k != "json"},
            "faults": [asdict(f) for f in soak.faults], "peak_rss": soak.peak_rss,
            "restarts": soak.restarts, "settle_seconds": soak.settle_seconds,
            "checks": checks}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long to inject faults")
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--clusters", type=int, default=6)
    p.add_argument("--pods", type=int, default=200, help="pods per cluster at start")
    p.add_argument("--rate", type=float, default=10.0, help="changes/s per cluster")
    p.add_argument("--session-timeout", type=float, default=4.0)
    p.add_argument("--full-sync-interval", type=float, default=120.0)
    p.add_argument("--faults", default=",".join(FAULTS),
                   help=f"comma-separated subset of {','.join(FAULTS)}")
    p.add_argument("--gap", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"),
                   help="quiet seconds between two faults (uniform)")
    p.add_argument("--rss-limit-mib", type=int, default=400)
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(args.faults) - set(FAULTS))
    if unknown or not args.faults:
        p.error(f"unknown faults {unknown}; choose from {','.join(FAULTS)}")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


async def soak_main(args: argparse.Namespace) -> int:
    """Set up, run, judge, report, tear down; the exit status."""
    work = Path(tempfile.mkdtemp(prefix="bkcmdb-soak-"))
    soak = Soak(args=args, work=work, rng=random.Random(args.seed))
    print(f"soak: seed {args.seed}, logs in {work}", flush=True)
    try:
        await soak.setup()
        await soak.run()
        checks = await soak.verdict()
    finally:
        await soak.teardown()
    doc = report(soak, checks)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    if not args.keep and all(why is None for why in checks.values()):
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(why is None for why in checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return asyncio.run(soak_main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
