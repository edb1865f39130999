"""A private ZooKeeper server for tests: the Debian package's jars, run as a foreground java.

Why not the system service: tests need their own data directory (thrown away afterwards,
kept across `stop()`/`start()` to test a server restart), a loopback port nobody else
uses, and a 200 ms tick so session timeouts can be as short as 400 ms.

Usage (from any test folder):

    server = ZkServer(tmp_dir)          # picks a free loopback port
    server.start()                      # returns once the server answers `srvr` as serving
    server.hosts                        # "127.0.0.1:PORT", for KazooClient
    server.stop(); server.start()       # same port, same data dir: sessions survive
    server.close()

Readiness is the `srvr` four-letter word answering with a `Mode:` line (the server is
serving requests), polled until a deadline; there is no event to await from outside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

JARS = Path("/usr/share/java")
ZOOKEEPER_JAR = JARS / "zookeeper.jar"  # its manifest's Class-Path names the dependencies
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
TICK_MS = 200


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def four_letter(host: str, port: int, command: str, timeout: float = 2.0) -> str:
    """Send a four-letter word (`ruok`, `srvr`, `wchp`, ...) and return the whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(command.encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class ZkServer:
    """One standalone ZooKeeper server process with its own config and data directory."""

    def __init__(self, base_dir: Path, *, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.base_dir / "zookeeper.log"

    @property
    def hosts(self) -> str:
        """Connection string for kazoo."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the java process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.base_dir / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                [
                    f"tickTime={TICK_MS}",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={self.data_dir}",
                    f"clientPort={self.port}",
                    f"clientPortAddress={self.host}",
                    f"minSessionTimeout={2 * TICK_MS}",
                    "maxSessionTimeout=60000",
                    "maxClientCnxns=0",
                    "4lw.commands.whitelist=*",
                    "admin.enableServer=false",
                    "forceSync=no",
                    "",
                ]
            )
        )
        return cfg

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again, with the same port and data) and wait until it serves."""
        if self.running:
            return
        java = shutil.which("java")
        if java is None or not ZOOKEEPER_JAR.exists():
            raise RuntimeError("ZooKeeper needs `java` and the Debian `zookeeper` package")
        cfg = self._write_config()
        cmd = [
            java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.admin.enableServer=false",
            "-Dzookeeper.jmx.log4j.disable=true",
            f"-Dzookeeper.log.dir={self.base_dir}",
            "-cp",
            f"{ZOOKEEPER_JAR}:{JARS / 'slf4j-simple.jar'}",
            MAIN,
            str(cfg),
        ]
        log = self._log.open("ab")
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.base_dir, start_new_session=True,
            )
        finally:
            log.close()
        self._wait_serving(timeout)

    def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited early; see {self._log}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if "Mode:" in four_letter(self.host, self.port, "srvr", timeout=1.0):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ZooKeeper not serving after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)  # polling a port: there is no event to await from outside

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the data directory stays."""
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
        """SIGKILL the process: a crash, nothing flushed beyond what is already on disk."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    close = stop

    def four_letter(self, command: str) -> str:
        """Ask this server a four-letter word."""
        return four_letter(self.host, self.port, command)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ZkServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
