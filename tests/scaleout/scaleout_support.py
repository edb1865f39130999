"""Processes of the scale-out suite: the simulator and synchronizer instances, for real.

- `SimProcess`: the simulated API server (`python -m synchronizer.simulator`) in a
  process of its own, driven through its `/_sim/` admin API (churn, truth), so a paused
  or busy synchronizer never starves it and the test's loop stays free.
- `Instance`: one `python -m synchronizer run --config FILE` subprocess; its stderr
  lines are kept with their arrival time (on the test's loop clock) and can be awaited;
  its /status and /metrics are read over HTTP; signals are real (KILL, TERM, STOP, CONT).
- `Fleet`: the instances of one test, sharing a ZooKeeper root, a CMDB database and the
  simulator; `until()` polls every live instance's /status (the processes are elsewhere:
  there is no event to await) until a predicate holds, with an upper bound; `settled()`
  is the scale-out invariant (see `settled_check`).
- `pause_inside_write()`: SIGSTOP an instance inside one of its write transactions, a
  moment made to happen with a held row lock (tests/dbfaults.py); `pause_between_writes()`:
  SIGSTOP it when it holds no transaction open.

The oracles on the CMDB and ZooKeeper are in `scaleout_oracles`. tests/ and this folder
are on sys.path (rootdir conftest, no __init__.py here).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pymysql
from dbfaults import CACHE_IDLE, RowLock, Trx, wait_for_transaction
from scaleout_oracles import GUARD, create_user, drop_user, locking_transactions, now

from synchronizer.coordination import assign

CLUSTERS = [f"c{i:02d}" for i in range(12)]
"""12 clusters; on a plain ring over sync-0..sync-2 they split 4/4/4."""
POLL = 0.05
"""Seconds between two looks at another process's /status (bounded loops only)."""

SYNC: dict[str, Any] = {"linger": 0.005, "full_sync_interval": 3600, "backoff_max": 1,
                        "cluster_pull_interval": 3600, "senders": 2}
"""The `sync` section of every instance: batches written at once, no periodic full sync
or registry re-read during a test (each would be a confounder), retries capped at 1 s."""

EXPIRY_SLACK = 6.0
"""The "few seconds" after the session timeout within which a dead instance's clusters
are owned again: the server's expiry check (a tick), the master's rebalance, the new
owners' lease and first list. A bound stated by the issue, not a measurement."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the simulator --------------------------------------------------------------------------


class SimProcess:
    """The simulated API server as a subprocess, with its admin API."""

    def __init__(self, proc: asyncio.subprocess.Process, base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)

    @classmethod
    async def start(cls, log_dir: Path, clusters: Iterable[str], *, pods: int,
                    seed: int = 1) -> SimProcess:
        """Start it, populated with `pods` pods per cluster; returns once it serves."""
        log = (log_dir / "simulator.log").open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "synchronizer.simulator", "--port", "0",
                "--clusters", ",".join(clusters), "--pods", str(pods), "--namespaces", "3",
                "--bookmark-interval", "0.5", "--seed", str(seed),
                stdout=asyncio.subprocess.PIPE, stderr=log, stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        assert proc.stdout is not None
        async with asyncio.timeout(GUARD):
            line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulator did not start; see {log_dir / 'simulator.log'}")
        return cls(proc, line.decode().strip())

    def url_for(self, cluster: str) -> str:
        """The API server URL of one cluster."""
        return f"{self.base_url}/clusters/{cluster}"

    async def truth(self, cluster: str) -> dict[str, int]:
        """{uid: resourceVersion} of every live pod of `cluster`."""
        doc = (await self.http.get(f"/_sim/clusters/{cluster}/truth")).json()
        return {p["uid"]: int(p["rv"]) for p in doc["pods"]}

    async def pods(self, cluster: str) -> list[dict[str, Any]]:
        """Every live pod of `cluster`, whole (for oracles that project them)."""
        doc = (await self.http.get(f"/_sim/clusters/{cluster}/truth/pods",
                                   params={"objects": "1"})).json()
        return [item["object"] for item in doc["items"]]

    async def churn(self, cluster: str, *, events: int | None, rate: float | None,
                    seed: int) -> None:
        """Start changes in the background (`events` None: until `stop_churn`)."""
        reply = await self.http.post(f"/_sim/clusters/{cluster}/churn",
                                     json={"events": events, "rate": rate, "seed": seed})
        assert reply.status_code == 202, reply.text

    async def churn_all(self, clusters: Iterable[str], *, events: int | None,
                        rate: float | None, seed: int = 0) -> None:
        """`churn` on every cluster (different seeds)."""
        for n, cluster in enumerate(clusters):
            await self.churn(cluster, events=events, rate=rate, seed=seed * 1000 + n)

    async def admin(self, method: str, cluster: str, action: str = "",
                    body: dict[str, Any] | None = None) -> Any:
        """Call `/_sim/clusters/<cluster>/<action>` of the admin API; the decoded reply."""
        path = f"/_sim/clusters/{cluster}" + (f"/{action}" if action else "")
        reply = await self.http.request(method, path, json=body)
        assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()

    async def stop_churn(self, clusters: Iterable[str]) -> int:
        """Stop the churn of `clusters`; returns how many changes they made in total."""
        done = 0
        for cluster in clusters:
            reply = await self.http.delete(f"/_sim/clusters/{cluster}/churn")
            body = reply.json()
            done += int(body["done"]) if body else 0
        return done

    async def wait_churn(self, clusters: Iterable[str]) -> int:
        """Wait until the (finite) churn of `clusters` has finished; returns changes made."""
        pending = list(clusters)
        total = 0
        async with asyncio.timeout(GUARD):
            while pending:
                body = (await self.http.get(f"/_sim/clusters/{pending[0]}/churn")).json()
                if body is None or not body["running"]:
                    total += int(body["done"]) if body else 0
                    pending.pop(0)
                    continue
                await asyncio.sleep(POLL)  # another process: poll its progress, bounded
        return total

    async def close(self) -> None:
        """SIGTERM and wait."""
        await self.http.aclose()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(GUARD):
            await self.proc.wait()


# -- one synchronizer instance -----------------------------------------------------------------


@dataclass
class Instance:
    """A `python -m synchronizer run` subprocess and what it said, line by line."""

    id: str
    config: Path
    port: int
    metric_port: int
    proc: asyncio.subprocess.Process | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    log_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the process (e.g. libfaketime's)."""
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None
    http: httpx.AsyncClient | None = None

    async def start(self) -> Instance:
        """Start the process (its log lines are collected from now on)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "synchronizer", "run", "--config", str(self.config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=3.0)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        out = self.log_file.open("a") if self.log_file else None
        try:
            async for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                self.lines.append((now(), line))
                if out is not None:
                    out.write(line + "\n")
                    out.flush()
                self._new.set()
        finally:
            if out is not None:
                out.close()
            self._new.set()

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Started and not yet reaped."""
        return self.proc is not None and self.proc.returncode is None

    def rss(self) -> int:
        """Resident memory of the process in bytes (0 once it is gone), from /proc."""
        with contextlib.suppress(OSError, AssertionError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def signal(self, sig: signal.Signals) -> None:
        """Send a real signal."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = GUARD) -> int:
        """Wait for the process to end; its exit status."""
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader
        return code

    async def kill(self) -> None:
        """SIGKILL and reap."""
        if self.alive:
            self.signal(signal.SIGKILL)
        await self.wait_exit()

    async def close(self) -> None:
        """Stop gracefully if still running (resumed first if paused); release the client."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGCONT)
                self.signal(signal.SIGTERM)
            try:
                await self.wait_exit(30)
            except TimeoutError:
                await self.kill()
        if self.http is not None:
            await self.http.aclose()

    # -- what it says -------------------------------------------------------------------------

    def find(self, needle: str, after: int = 0) -> list[tuple[int, float, str]]:
        """Every (index, arrival time, line) from `after` on that contains `needle`."""
        return [(i, t, line) for i, (t, line) in enumerate(self.lines) if i >= after
                and needle in line]

    async def wait_for_line(self, *needles: str, after: int = 0,
                            timeout: float = GUARD) -> tuple[int, float, str]:
        """Wait until a line from index `after` on contains one of `needles`; returns
        (index, arrival time, line)."""
        seen = after
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for i in range(seen, len(self.lines)):
                        if any(needle in self.lines[i][1] for needle in needles):
                            return i, self.lines[i][0], self.lines[i][1]
                    seen = max(seen, len(self.lines))
                    if self._reader is None or self._reader.done():
                        raise AssertionError(f"{self.id} ended without {needles!r}:\n"
                                             + self.tail())
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"{self.id}: no {needles!r} within {timeout}s:\n"
                                 + self.tail()) from None

    def tail(self, n: int = 25) -> str:
        """The last lines, for failure messages."""
        return "\n".join(line for _, line in self.lines[-n:])

    async def status(self) -> dict[str, Any] | None:
        """Its /status document, or None if it does not answer (stopped, paused, dead)."""
        if not self.alive or self.http is None:
            return None
        try:
            reply = await self.http.get("/status", timeout=1.0)
        except httpx.HTTPError:
            return None
        return reply.json() if reply.status_code == 200 else None

    async def metrics(self) -> dict[str, float]:
        """Its /metrics as {series: value}, series written as in the exposition."""
        async with httpx.AsyncClient(timeout=3.0) as client:
            reply = await client.get(f"http://127.0.0.1:{self.metric_port}/metrics")
        out: dict[str, float] = {}
        for line in reply.text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                out[series] = float(value)
        return out


def metric_sum(samples: Mapping[str, float], name: str) -> float:
    """Sum of every series of `name` (all label values)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


# -- the fleet ------------------------------------------------------------------------------


Statuses = dict[str, dict[str, Any] | None]


@dataclass
class Fleet:
    """The instances of one test: same ZooKeeper root, CMDB and simulator."""

    tmp: Path
    sim: SimProcess
    dsn: str
    zk_hosts: str | None
    """None: standalone instances (no `zookeeper` section; each owns every cluster)."""
    zk_root: str
    session_timeout: float
    clusters: list[str] = field(default_factory=lambda: list(CLUSTERS))
    lease_ttl: float = 10.0
    sync: dict[str, Any] = field(default_factory=dict)
    """Overrides of the `sync` section every instance gets (see `SYNC`)."""
    instances: dict[str, Instance] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)

    def make(self, n: int, *, hosts: str | None = None, own_user: bool = False,
             dsn: str | None = None, env: Mapping[str, str] | None = None) -> Instance:
        """Write the config of `sync-<n>` (ZooKeeper through `hosts` if given; the CMDB
        through `dsn` if given, e.g. a fault proxy; with `own_user`, it reaches the CMDB
        as a database user of its own, `db_user(n)`, so its sessions can be told apart on
        the server; `env` is added to its environment)."""
        name = f"sync-{n}"
        port, metric_port = free_port(), free_port()
        config = self.tmp / f"{name}.yaml"
        target = dsn or self.dsn
        if own_user:
            target = create_user(self.dsn, self.db_user(n), via=dsn)
            self.users.append(self.db_user(n))
        doc: dict[str, Any] = {
            "instance": {"id": name, "address": "127.0.0.1", "port": port,
                         "metric_port": metric_port},
            "cmdb": {"dsn": target},
            "sync": {**SYNC, "lease_ttl": self.lease_ttl, **self.sync},
            "clusters": [{"id": c, "biz_id": i + 1, "server": self.sim.url_for(c)}
                         for i, c in enumerate(self.clusters)],
        }
        if self.zk_hosts is not None:
            doc["zookeeper"] = {"hosts": hosts or self.zk_hosts, "root": self.zk_root,
                                "session_timeout": self.session_timeout}
        config.write_bytes(orjson.dumps(doc))  # JSON is YAML
        instance = Instance(id=name, config=config, port=port, metric_port=metric_port,
                            log_file=self.tmp / f"{name}.log", env=dict(env or {}))
        self.instances[name] = instance
        return instance

    async def add(self, n: int, *, hosts: str | None = None, own_user: bool = False,
                  dsn: str | None = None, env: Mapping[str, str] | None = None
                  ) -> Instance:
        """Make and start `sync-<n>`."""
        return await self.make(n, hosts=hosts, own_user=own_user, dsn=dsn, env=env).start()

    def db_user(self, n: int) -> str:
        """The database user of `sync-<n>` when it has one of its own."""
        return f"{self.dsn.rsplit('/', 1)[-1][:20]}_{n}"

    def live(self) -> list[Instance]:
        """Instances whose process runs (paused ones included)."""
        return [i for i in self.instances.values() if i.alive]

    async def statuses(self, instances: Iterable[Instance] | None = None) -> Statuses:
        """{id: /status or None} of `instances` (default: the live ones), asked at once."""
        chosen = list(instances) if instances is not None else self.live()
        docs = await asyncio.gather(*(i.status() for i in chosen))
        return {i.id: d for i, d in zip(chosen, docs, strict=True)}

    async def until(self, check: Callable[[Statuses], str | None], *, timeout: float = GUARD,
                    instances: Iterable[Instance] | None = None) -> Statuses:
        """Poll /status until `check` returns None (it returns why not, otherwise)."""
        chosen = list(instances) if instances is not None else None
        why: str | None = "never looked"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    docs = await self.statuses(chosen)
                    why = check(docs)
                    if why is None:
                        return docs
                    await asyncio.sleep(POLL)  # other processes: a bounded poll
        except TimeoutError:
            tails = "\n".join(f"--- {i.id}\n{i.tail(12)}" for i in self.instances.values())
            raise AssertionError(f"not within {timeout:.1f}s: {why}\n{tails}") from None

    async def settled(self, members: Iterable[str] | None = None, *,
                      timeout: float = GUARD, waiting: Iterable[str] = ()) -> Statuses:
        """Wait until `members` (default: the live instances) own every cluster exactly
        once, as their master says, each past its first full sync (see `settled_check`;
        clusters in `waiting` may instead be waiting for their store lease)."""
        names = sorted(members) if members is not None else sorted(i.id for i in self.live())
        chosen = [self.instances[n] for n in names]
        allowed = frozenset(waiting)
        return await self.until(lambda docs: settled_check(docs, names, self.clusters, allowed),
                                timeout=timeout, instances=chosen)

    async def start_three(self, *, proxied: str | None = None, own_users: bool = False
                          ) -> Statuses:
        """Start sync-0, sync-1, sync-2 one after the other, each joining a settled fleet
        (a rolling start; sync-0, alone first, is the master). sync-2 reaches ZooKeeper
        through `proxied` if given. Why one at a time: see test_scaleout_defects.py
        (a simultaneous start stalls on reconcilers that wait for a lease)."""
        for n in range(3):
            await self.add(n, hosts=proxied if n == 2 else None, own_user=own_users)
            docs = await self.settled()
        assert masters(docs) == ["sync-0"]
        return docs

    async def close(self) -> None:
        """Stop every instance still running; drop the users made for them."""
        await asyncio.gather(*(i.close() for i in self.instances.values()),
                             return_exceptions=True)
        for user in self.users:
            with contextlib.suppress(pymysql.OperationalError):  # the server went first
                drop_user(self.dsn, user)


def owners(docs: Statuses) -> dict[str, list[str]]:
    """{cluster: [instances listing it in their /status clusters]}."""
    out: dict[str, list[str]] = {}
    for name, doc in docs.items():
        for c in (doc or {}).get("clusters", []):
            out.setdefault(c["id"], []).append(name)
    return out


def masters(docs: Statuses) -> list[str]:
    """The instances whose /status says master."""
    return [name for name, doc in docs.items() if doc and doc["master"]]


def settled_check(docs: Statuses, members: list[str], clusters: list[str],
                  waiting: frozenset[str] = frozenset()) -> str | None:
    """None when: every member answers, ready and connected, sees exactly `members`;
    exactly one of them is master and its `assignments` is the plan for `members` (the
    consistent-hash ring, `synchronizer.coordination.assign`, so every cluster once);
    each member runs exactly its assigned share (so the union is every cluster, with no
    overlap) and every cluster is watching after a full sync (those in `waiting`: or
    waiting for their lease). Otherwise why not."""
    for name in members:
        doc = docs.get(name)
        if doc is None:
            return f"{name} does not answer"
        if not doc["ready"] or doc["coordination"] not in ("connected", "standalone"):
            return f"{name}: {doc['coordination']}, {doc['reason']}"
        if doc["members"] != members:
            return f"{name} sees members {doc['members']}"
    heads = masters(docs)
    if len(heads) != 1:
        return f"masters: {heads}"
    assignments = docs[heads[0]]["assignments"]  # type: ignore[index]
    if assignments != assign(clusters, members):  # the product's own pure plan (plain ring)
        return f"master's assignments {assignments} are not yet the plan for {members}"
    for name in members:
        doc = docs[name]
        assert doc is not None
        running = sorted(c["id"] for c in doc["clusters"])
        share = sorted(c for c, o in assignments.items() if o == name)
        if running != share:
            return f"{name} runs {running}, assigned {share}"
        for c in doc["clusters"]:
            if c["id"] in waiting and c["state"] == "waiting-lease":
                continue
            if c["state"] != "watching" or not c["last_full_sync"]:
                return f"{name}: {c['id']} {c['state']}"
    return None


def share(docs: Statuses, name: str) -> set[str]:
    """The clusters `name` lists in its /status."""
    doc = docs.get(name)
    return {c["id"] for c in doc["clusters"]} if doc else set()


def cluster_field(docs: Statuses, key: str) -> dict[str, Any]:
    """{cluster: its /status `key`} over every instance."""
    return {c["id"]: c[key] for doc in docs.values() if doc for c in doc["clusters"]}


async def pause_inside_write(inst: Instance, sim: SimProcess, dsn: str, user: str,
                             cluster: str, *, seed: int = 4) -> list[Trx]:
    """SIGSTOP `inst` (which reaches the CMDB as `user`) inside one of its write
    transactions for `cluster`; returns the transactions it leaves open.

    The moment is made, not waited for: an admin session locks every row of `cluster`
    (`dbfaults.RowLock`), the cluster churns, and the owner's next write blocks at its
    upsert, its fence check's lock on the lease row already taken; once the server shows
    that transaction in LOCK WAIT, the process is stopped. Then the admin lock goes: the
    server finishes the stopped writer's statement, and its transaction stays open, idle,
    holding the lease row, for as long as the process stays stopped (or until the server
    ends it) -- as a process frozen between two statements of a write would.
    """
    async with RowLock(dsn, cluster):
        await sim.churn(cluster, events=None, rate=50.0, seed=seed)
        try:
            await wait_for_transaction(dsn, user, state="LOCK WAIT")
            inst.signal(signal.SIGSTOP)
        finally:
            await sim.stop_churn([cluster])
    return await wait_for_transaction(dsn, user, state="RUNNING")


async def pause_between_writes(inst: Instance, dsn: str, user: str, *, tries: int = 50
                               ) -> None:
    """SIGSTOP `inst` (which reaches the CMDB as `user`) when it holds no transaction open.

    For a quiet fleet, where the only writes are lease renewals of a few milliseconds
    every few seconds: almost any moment is right, and a stop that lands inside one is
    undone and tried again. Each look is made twice, 2 x `CACHE_IDLE` apart (so the second
    is a fresh snapshot): a statement or COMMIT already on the wire when the process
    stopped has been executed by then.
    """
    for _ in range(tries):
        inst.signal(signal.SIGSTOP)
        first = await asyncio.to_thread(locking_transactions, dsn, user)
        await asyncio.sleep(2 * CACHE_IDLE)  # the server finishes what was on the wire
        second = await asyncio.to_thread(locking_transactions, dsn, user)
        if not (first or second):
            return
        inst.signal(signal.SIGCONT)
        await asyncio.sleep(0.05)  # let it finish that renewal before the next try
    raise AssertionError(f"{inst.id} was inside a transaction at each of {tries} stops")
