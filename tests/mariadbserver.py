"""A private MariaDB server for tests and the soak benchmark: `mariadb-install-db` into a
directory of its own, then `mariadbd` in the foreground on a free loopback port.

Why not the shared server on 3306: fault tests restart the server (SIGKILL, then a crash
recovery on the same data directory), make it read-only (`SET GLOBAL read_only`) or
shorten `innodb_lock_wait_timeout` for every session; doing that to a server other
engineers' tests use at the same moment would break theirs. A private server costs about
half a second to install and a fraction of a second to start, so each test can have one.

    server = MariaDbServer(tmp_dir)     # picks a free loopback port
    server.start()                      # installs on first use; returns once it answers
    server.dsn("db")                    # "mysql://root@127.0.0.1:PORT/db"
    server.kill(); server.start()       # a crash and a recovery: same port, same data
    server.stop()                       # clean shutdown (SIGTERM)

The flags are those of scripts/ensure-services.sh (no binary log, relaxed flushing, many
connections); `options` adds more (`{"innodb-lock-wait-timeout": "1"}`). Readiness is a
`SELECT 1` answered over TCP, polled until a deadline: there is no event to await from
outside the server process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import pymysql
from zkserver import free_port

POLL = 0.05
"""Seconds between two readiness probes (another process: there is no event to await)."""
SOCKET_PATH_MAX = 100
"""Longest Unix socket path we use (the kernel's limit is 107 bytes)."""


class MariaDbServer:
    """One `mariadbd` process with its own data directory, port and socket."""

    def __init__(self, base_dir: Path, *, port: int | None = None,
                 options: Mapping[str, str] | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.options = dict(options or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.base_dir / "mariadbd.log"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def dsn(self, database: str = "", *, user: str = "root", password: str = "") -> str:
        """A DSN for `user` on this server (naming `database` if given)."""
        secret = f":{password}" if password else ""
        return f"mysql://{user}{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        """A plain autocommit root connection (for set-up, oracles and sabotage)."""
        return pymysql.connect(host=self.host, port=self.port, user="root", password="",
                               database=database, autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """Create database `name` (utf8mb4); its root DSN."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        return self.dsn(name)

    def install(self) -> None:
        """Create the system tables (once; a restart reuses the data directory)."""
        if (self.data_dir / "mysql").is_dir():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tool = shutil.which("mariadb-install-db")
        if tool is None:
            raise RuntimeError("a private MariaDB needs the Debian `mariadb-server` package")
        subprocess.run([tool, "--no-defaults", f"--datadir={self.data_dir}", "--user=root",
                        "--auth-root-authentication-method=normal"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (again, same port and data) and wait until it answers."""
        if self.running:
            return
        self.install()
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        extra = [f"--{key}={value}" for key, value in self.options.items()]
        cmd = [server, "--no-defaults", f"--datadir={self.data_dir}", "--user=root",
               f"--bind-address={self.host}", f"--port={self.port}",
               f"--socket={self._socket()}",
               f"--pid-file={self.base_dir / 'mysqld.pid'}", "--skip-log-bin",
               "--innodb-flush-log-at-trx-commit=2", "--max-connections=500", *extra]
        log = self._log.open("ab")
        try:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.base_dir,
                                          start_new_session=True)
        finally:
            log.close()
        self._wait_serving(timeout)

    def _socket(self) -> Path:
        """The Unix socket path (nobody uses it, but the server must not take the system
        server's); under the data's directory unless that is too long for a socket."""
        path = self.base_dir / "mysqld.sock"
        if len(str(path)) > SOCKET_PATH_MAX:
            path = Path(tempfile.gettempdir()) / f"mariadb-test-{self.port}.sock"
        return path

    def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited early:\n{self.log_tail()}")
            with contextlib.suppress(pymysql.MySQLError):
                conn = self.connect()
                conn.close()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd not serving after {timeout}s:\n{self.log_tail()}")
            time.sleep(POLL)

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown (SIGTERM: connections are closed, InnoDB flushed)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash; the next `start` runs InnoDB's crash recovery."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    close = stop

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> MariaDbServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

