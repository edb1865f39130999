"""`bkcmdb-synchronizer run` as a real subprocess: endpoints, metrics, graceful SIGTERM,
config errors, and no secret in logs, metrics or /status."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from synchronizer.cmdb import open_store
from synchronizer.kinds import PODS
from synchronizer.simulator import Simulator, churn, populate

from .harness import TIMEOUT, admin

PASSWORD = "s3cr3t-" + uuid.uuid4().hex[:8]
TOKEN = "tok-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A synchronizer subprocess whose log lines can be awaited."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._new.set()
        self._new.set()

    async def wait_for_line(self, needle: str) -> str:
        try:
            return await self._wait_for_line(needle)
        except TimeoutError:
            raise AssertionError(f"no {needle!r} within {TIMEOUT}s:\n" +
                                 "\n".join(self.lines[-20:])) from None

    async def _wait_for_line(self, needle: str) -> str:
        async with asyncio.timeout(TIMEOUT):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if needle in line:
                        return line
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(f"process ended without {needle!r}:\n" +
                                         "\n".join(self.lines[-20:]))
                self._new.clear()
                await self._new.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            code = await self.proc.wait()
            await self._reader
        return code


async def start(config: Path) -> Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Process(proc)


@pytest.fixture
def secret_dsn(mysql_dsn: str) -> str:
    """The test database reached through a user with a password."""
    u = urlsplit(mysql_dsn)
    user = "u" + uuid.uuid4().hex[:8]
    conn = admin(mysql_dsn)
    with conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{PASSWORD}'")
        cur.execute(f"GRANT ALL ON `{u.path.lstrip('/')}`.* TO '{user}'@'%'")
        cur.execute(f"GRANT ALL ON `{u.path.lstrip('/')}`.* TO '{user}'@'localhost'")
    yield f"mysql://{user}:{PASSWORD}@{u.hostname}:{u.port or 3306}{u.path}"
    with conn.cursor() as cur:
        cur.execute(f"DROP USER '{user}'@'%'")
        cur.execute(f"DROP USER '{user}'@'localhost'")
    conn.close()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.5, seed=3)
    await simulator.start()
    yield simulator
    await simulator.stop()


async def test_run_serves_syncs_and_stops_cleanly_without_leaking_secrets(
    sim: Simulator, secret_dsn: str, tmp_path: Path
) -> None:
    import random

    rng = random.Random(1)
    clusters = ["alpha", "beta"]
    for cid in clusters:
        await populate(sim.add_cluster(cid), pods=150, rng=rng)
    port, metric_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"instance: {{id: sync-t, address: 127.0.0.1, port: {port}, metric_port: {metric_port}}}\n"
        f"cmdb: {{dsn: '{secret_dsn}'}}\n"
        "sync: {full_sync_interval: 3600, linger: 0.005}\n"
        "clusters:\n" + "".join(
            f"  - {{id: {c}, biz_id: {n + 1}, server: '{sim.url_for(c)}', token: '{TOKEN}'}}\n"
            for n, c in enumerate(clusters)))
    proc = await start(config)
    try:
        for cid in clusters:
            await proc.wait_for_line(f"cluster {cid} pods: full sync (start) done")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            status = (await http.get("/status")).json()
            assert status["instance"] == "sync-t" and status["master"] is True
            assert status["members"] == ["sync-t"]
            assert [c["id"] for c in status["clusters"]] == clusters
            for c in status["clusters"]:
                assert c["state"] == "watching" and c["last_full_sync"]
                assert c["pods"] == 150
            assert status["assignments"] == {c: "sync-t" for c in clusters}
            page = await http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            status_text = (await http.get("/status")).text
        metrics = httpx.get(f"http://127.0.0.1:{metric_port}/metrics").text
        lint = subprocess.run(["promtool", "check", "metrics"], input=metrics, text=True,
                              capture_output=True, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        for name in ("bkcmdb_sync_is_master 1.0", "bkcmdb_sync_assigned_clusters 2.0",
                     'bkcmdb_sync_full_sync_duration_seconds_count{cluster="alpha"}',
                     "bkcmdb_sync_events_total",
                     # the master's duty, started on election: long before every cluster
                     # of the poll above had synced
                     'bkcmdb_sync_registry_clusters{registry="static"} 2.0',
                     'bkcmdb_sync_registry_up{registry="static"} 1.0'):
            assert name in metrics
        await churn(sim.cluster("alpha"), events=100, rate=None, rng=rng)
        target = sim.cluster("alpha").resource_version
        async with asyncio.timeout(TIMEOUT):
            while True:  # the process is elsewhere: poll its status (no event to await)
                doc = httpx.get(f"http://127.0.0.1:{port}/status").json()
                alpha = next(c for c in doc["clusters"] if c["id"] == "alpha")
                if alpha["resume_version"] and alpha["resume_version"] >= target \
                        and alpha["queued"] == 0:
                    break
                await asyncio.sleep(0.1)
    finally:
        code = await proc.stop()
    assert code == 0, "\n".join(proc.lines[-20:])
    assert any("stopped" in line for line in proc.lines)
    logs = "\n".join(proc.lines)
    for secret in (PASSWORD, TOKEN):
        assert secret not in logs and secret not in metrics and secret not in status_text
    # after a graceful stop, everything observed was flushed: the table equals the truth
    store = await open_store(secret_dsn)
    try:
        for cid in clusters:
            rows = await store.table(PODS).rows(cid)  # type: ignore[arg-type]
            active = {r["uid"] for r in rows if r["state"] == "Active"}
            assert active == {p["uid"] for p in sim.cluster(cid).truth()}
            lease = await store.lease(cid)  # type: ignore[arg-type]
            # released on the way out: expired, epoch kept (never deleted)
            assert lease is not None and lease["expires_at"].year == 1970
    finally:
        await store.close()


@pytest.mark.parametrize(("text", "message"), [
    ("clusters: [{id: a}]", "clusters.0: give exactly one of server, kubeconfig"),
    ("instance: {port: eighty}", "instance.port: Input should be a valid integer"),
    ("clusterz: []", "clusterz: unknown key"),
    ("clusters: [{biz_id: 1, server: 'http://x'}]", "clusters.0.id: required key is missing"),
    ("sync: [1, 2", "is not valid YAML"),
])
async def test_run_with_a_bad_config_exits_2_with_one_line(tmp_path: Path, text: str,
                                                           message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in err.decode()


async def test_unreachable_cmdb_is_not_fatal_and_shows_in_readyz(tmp_path: Path) -> None:
    port, metric_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"instance: {{address: 127.0.0.1, port: {port}, metric_port: {metric_port}}}\n"
        f"cmdb: {{dsn: 'mysql://root:{PASSWORD}@127.0.0.1:{free_port()}/nowhere'}}\n")
    proc = await start(config)
    try:
        line = await proc.wait_for_line("cmdb unreachable, retrying")
        assert PASSWORD not in line
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 503 and "cmdb" in ready.text
        assert PASSWORD not in ready.text
    finally:
        assert await proc.stop() == 0
