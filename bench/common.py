"""What every benchmark driver shares: the processes it steers, the database, statistics.

- `SimProcess` starts `bench.simproc` (the simulated API server) in its own process and
  speaks its admin API (`/_sim/`) and the timed-churn control port.
- `Worker` starts a synchronizer-side process (`bench.ours` or `bench.naive_peer`) and
  talks to it in JSON lines over stdin/stdout: one command, one reply.
- `fresh_database` drops and recreates a database, so a run starts from an empty table.
- `machine()` and `load()` describe the conditions of a measurement.
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pymysql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_SERVER = "mysql://root@127.0.0.1:3306"


def server_dsn() -> str:
    """The MariaDB server (no database): `BKCMDB_TEST_MYSQL`, else root on loopback."""
    return os.environ.get("BKCMDB_TEST_MYSQL", DEFAULT_SERVER).rstrip("/")


def connect(database: str | None = None) -> pymysql.connections.Connection:
    """A plain autocommit connection to the server (or one database of it)."""
    u = urlsplit(server_dsn())
    return pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                           user=u.username or "root", password=u.password or "",
                           database=database, autocommit=True)


def fresh_database(name: str) -> str:
    """Drop and create database `name`; return its DSN for `open_store`."""
    conn = connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    return f"{server_dsn()}/{name}"


def drop_database(name: str) -> None:
    """Drop database `name` if it exists."""
    conn = connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def count_rows(database: str, cluster: str) -> dict[str, int]:
    """Rows of `cluster` in `database` by state."""
    conn = connect(database)
    with conn.cursor() as cur:
        cur.execute("SELECT state, COUNT(*) FROM pods WHERE cluster_id = %s GROUP BY state",
                    (cluster,))
        out = {str(state): int(n) for state, n in cur.fetchall()}
    conn.close()
    return out


def bulk_insert_seconds(database: str, cluster: str, *, batch: int = 500) -> tuple[float, int]:
    """The reference an initial sync is held to: the same rows, re-inserted into an empty
    copy of the `pods` table with multi-row INSERTs of `batch` rows, one commit each,
    through the same driver the store uses (asyncmy), from a tight loop with the values
    already in memory. (seconds, rows)."""
    import asyncio

    import asyncmy

    from synchronizer.cmdb.rows import column_names
    from synchronizer.kinds import PODS

    u = urlsplit(server_dsn())

    async def run() -> tuple[float, int]:
        conn = await asyncmy.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                                     user=u.username or "root", password=u.password or "",
                                     database=database, autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute("SET sql_notes = 0")  # no note for an absent table
                await cur.execute("DROP TABLE IF EXISTS pods_bulk")
                await cur.execute("CREATE TABLE pods_bulk LIKE pods")
                # every column the store writes (the generated content_sum is the server's)
                columns = ", ".join(f"`{c}`" for c in column_names(PODS))
                await cur.execute(f"SELECT {columns} FROM pods WHERE cluster_id = %s",
                                  (cluster,))
                rows = list(await cur.fetchall())
                names = ", ".join(f"`{d[0]}`" for d in cur.description)
                marks = ", ".join(["%s"] * len(cur.description))
                sql = f"INSERT INTO pods_bulk ({names}) VALUES ({marks})"
                started = time.perf_counter()
                for i in range(0, len(rows), batch):
                    await cur.executemany(sql, rows[i:i + batch])
                seconds = time.perf_counter() - started
                await cur.execute("DROP TABLE pods_bulk")
        finally:
            conn.close()
        return seconds, len(rows)

    return asyncio.run(run())


def mariadb_version() -> str:
    """`SELECT VERSION()` of the server."""
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        (version,) = cur.fetchone()
    conn.close()
    return str(version)


def load() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, Any]:
    """CPU model and count, memory, Python, MariaDB: the conditions of a measurement."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {"cpu": model, "cores": os.cpu_count(), "mem_gib": round(mem_kb / 2**20),
            "python": platform.python_version(), "mariadb": mariadb_version(),
            "kernel": platform.release()}


def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mariadb_pid() -> int | None:
    """The pid of the local MariaDB/MySQL server, if it runs on this machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in ("mariadbd", "mysqld"):
                return int(entry.name)
    return None


class CpuMeter:
    """CPU seconds used by a set of processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._start: dict[str, float] = {}

    def start(self) -> None:
        """Note every process's CPU time now."""
        self._start = {name: pid_cpu(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds per process since `start()`."""
        return {name: pid_cpu(pid) - self._start[name] for name, pid in self.pids.items()}


def median(values: Sequence[float]) -> float:
    """The median (of at least one value)."""
    return float(statistics.median(values))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


class ProcessError(RuntimeError):
    """A child process died or answered with an error."""


class SimProcess:
    """The simulated API server in a process of its own (`python -m bench.simproc`)."""

    def __init__(self, *, seed: int = 1) -> None:
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives with the process)
            prefix="bench-sim-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.simproc", "--seed", str(seed)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise ProcessError(f"simulator did not start: {Path(self._log.name).read_text()}")
        info = json.loads(line)
        self.url: str = info["url"]
        self.control: str = info["control"]
        self.http = httpx.Client(timeout=600)

    def cluster_url(self, cluster: str) -> str:
        """The API server URL of one simulated cluster."""
        return f"{self.url}/clusters/{cluster}"

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call `/_sim/clusters/<path>`; return the decoded reply."""
        r = self.http.request(method, f"{self.url}/_sim/clusters/{path}", json=body)
        if r.status_code >= 400:
            raise ProcessError(f"simulator {method} {path}: {r.status_code} {r.text}")
        return r.json()

    def create(self, cluster: str, *, pods: int, seed: int = 1, namespaces: int = 8) -> Any:
        """Create (or reuse) a cluster with unbounded history and populate it."""
        self.admin("POST", cluster, {"bookmark_interval": 1.0})
        return self.admin("POST", f"{cluster}/populate",
                          {"pods": pods, "namespaces": namespaces, "seed": seed})

    def stats(self, cluster: str) -> dict[str, Any]:
        """Revision, pods, history, watchers of a cluster."""
        return dict(self.admin("GET", cluster))

    def stall(self, cluster: str, stalled: bool) -> None:
        """Hold (or release) every open watch of a cluster."""
        self.admin("POST", f"{cluster}/stall", {"stalled": stalled})

    def compact(self, cluster: str) -> None:
        """Forget the cluster's history (frees the simulator's memory between runs)."""
        self.admin("POST", f"{cluster}/compact", {})

    def wait_watchers(self, cluster: str, n: int = 1, timeout: float = 60) -> None:
        """Poll until `n` watches are open on the cluster."""
        deadline = time.monotonic() + timeout
        while self.stats(cluster)["watchers"] < n:
            if time.monotonic() > deadline:
                raise ProcessError(f"no watch opened on {cluster} in {timeout} s")
            time.sleep(0.05)

    def churn_flat_out(self, cluster: str, events: int, *, seed: int) -> dict[str, Any]:
        """Make `events` changes as fast as the simulator can; wait; return the progress."""
        self.admin("POST", f"{cluster}/churn", {"events": events, "rate": None, "seed": seed})
        while True:
            progress = self.admin("GET", f"{cluster}/churn")
            if not progress["running"]:
                if progress.get("error"):
                    raise ProcessError(f"churn failed: {progress['error']}")
                return dict(progress)
            time.sleep(0.2)

    def timed_churn(self, cluster: str, events: int, rate: float, *, seed: int) -> None:
        """Start a timed churn (see `bench.simproc`)."""
        r = self.http.post(f"{self.control}/bench/{cluster}/timed_churn",
                           json={"events": events, "rate": rate, "seed": seed})
        r.raise_for_status()

    def timed_churn_wait(self, cluster: str) -> list[tuple[int, str, float]]:
        """Wait for the timed churn to end; return its log of (rv, uid, wall time)."""
        while True:
            r = self.http.get(f"{self.control}/bench/{cluster}/timed_churn")
            r.raise_for_status()
            if not r.json()["running"]:
                break
            time.sleep(0.2)
        reply = self.http.get(f"{self.control}/bench/{cluster}/timed_churn",
                              params={"log": "1"}).json()
        if reply.get("error"):
            raise ProcessError(f"timed churn failed: {reply['error']}")
        return [(int(rv), str(uid), float(t)) for rv, uid, t in reply["log"]]

    def close(self) -> None:
        """Stop the simulator."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        os.unlink(self._log.name)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Worker:
    """A synchronizer-side process steered in JSON lines (`bench.ours`, `bench.naive_peer`).

    Each `call` writes one command object and reads one reply object; a reply carrying
    `error` raises `ProcessError`, so does the process dying (with its stderr's tail).
    """

    def __init__(self, module: str, args: Sequence[str], *,
                 env: dict[str, str] | None = None) -> None:
        self.command = [PYTHON, "-m", module, *args]
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives with the process)
            prefix="bench-worker-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, env={**os.environ, **(env or {})})
        self.last: dict[str, Any] = {}
        self._closed = False

    def stderr_tail(self, n: int = 4000) -> str:
        """The last characters the process wrote to stderr."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-n:]

    def call(self, cmd: str, timeout: float = 1800, **args: Any) -> dict[str, Any]:
        """Send one command and return its reply."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProcessError(f"{self.command[2]} died: {self.stderr_tail()}") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise ProcessError(f"{self.command[2]}: no reply to {cmd} in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise ProcessError(f"{self.command[2]} exited {self.proc.returncode} during {cmd}:"
                               f" {self.stderr_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise ProcessError(f"{self.command[2]} {cmd}: {reply['error']}\n"
                               f"{self.stderr_tail()}")
        return dict(reply)

    def close(self) -> dict[str, Any]:
        """Ask the process to exit; return its last reply (peak RSS, CPU time)."""
        if self._closed:
            return self.last
        try:
            if self.proc.poll() is None:
                self.last = self.call("exit", timeout=120)
                self.proc.wait(60)
        finally:
            self._closed = True
            self.kill()
            self._log.close()
            os.unlink(self._log.name)
        return self.last

    def kill(self) -> None:
        """End the process at once (after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.kill()
        self.close()

    @property
    def pid(self) -> int:
        """The process id (for a sampling profiler)."""
        return self.proc.pid


def vm_hwm_kib() -> int:
    """This process's peak resident set size (VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def serve_commands(handle: Any) -> None:
    """The worker side of `Worker`: read commands from stdin, write `handle(cmd)` replies.

    `handle` takes the command dict and returns the reply dict; an exception becomes an
    `{"error": ...}` reply. The command `exit` ends the loop after its reply.
    """
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            reply = handle(command)
        except Exception as exc:  # reported to the driver, which raises it
            import traceback

            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if command.get("cmd") == "exit":
            return
