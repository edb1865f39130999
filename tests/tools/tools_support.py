"""Helpers of the tools suite: the CLI as a subprocess, configs, an in-process instance.

`sync_once` runs a real `Instance` (standalone, ports chosen by the OS) against the
simulator until every cluster's reconciler has written the cluster's latest version, then
stops it gracefully: the awaited condition is the engine's own `caught_up`, never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
import yaml
from pydantic import SecretStr

from reconciler import ClusterId
from synchronizer.app import Instance
from synchronizer.settings import (
    ClusterSettings,
    CmdbSettings,
    InstanceSettings,
    Settings,
    SyncSettings,
)
from synchronizer.simulator import SimCluster, Simulator, populate

ROOT = Path(__file__).resolve().parents[2]
BIZ_ID = 5


@dataclass(frozen=True)
class Result:
    """What a finished CLI run left behind."""

    code: int
    out: str
    err: str


async def cli(*args: str, timeout: float = 60.0) -> Result:
    """Run `python -m synchronizer ARGS` without blocking the loop (the simulator serves)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Result, *needles: str) -> None:
    """Exit 2, exactly one line on stderr naming every needle, and no traceback."""
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("bkcmdb-synchronizer: "), lines
    assert "Traceback" not in result.err + result.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


async def populated(sim: Simulator, cluster_id: str, pods: int, seed: int = 3, *,
                    nodes: int = 0, workloads: int = 0) -> SimCluster:
    """Add a cluster to the simulator with `pods` realistic Pods (and, when asked, the
    nodes and workloads that own them)."""
    cluster = sim.add_cluster(cluster_id)
    await populate(cluster, pods=pods, namespaces=3, annotated_fraction=0.5,
                   rng=random.Random(seed), nodes=nodes, workloads=workloads)
    return cluster


def settings_for(sim: Simulator, dsn: str, clusters: Sequence[str]) -> Settings:
    """Standalone settings for these simulated clusters; ports 0 (the OS picks)."""
    return Settings.model_construct(
        instance=InstanceSettings.model_construct(id="test", address="127.0.0.1", port=0,
                                                  metric_port=0),
        zookeeper=None,
        cmdb=CmdbSettings.model_construct(dsn=SecretStr(dsn)),
        sync=SyncSettings(),
        clusters=[ClusterSettings(id=c, biz_id=BIZ_ID, server=sim.url_for(c)) for c in clusters],
    )


def write_config(path: Path, sim: Simulator | None, dsn: str, clusters: Sequence[str],
                 server: str | None = None) -> Path:
    """A YAML config file for the CLI naming these clusters (or one fixed `server`)."""
    doc: dict[str, Any] = {
        "cmdb": {"dsn": dsn},
        "clusters": [{"id": c, "biz_id": BIZ_ID,
                      "server": server or (sim.url_for(c) if sim else "http://127.0.0.1:1")}
                     for c in clusters],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Instance]:
    """A started instance; stopped gracefully on exit."""
    instance = Instance(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(instance.run(stop))
    try:
        yield instance
    finally:
        stop.set()
        await task


async def caught_up(instance: Instance, sim: Simulator, clusters: Sequence[str]) -> None:
    """Await every kind of every cluster having written the cluster's latest version.

    One revision counter orders all kinds, so a kind that saw no change still passes the
    latest version on its next bookmark.
    """
    async with asyncio.timeout(60):
        for cluster_id in clusters:
            cluster = sim.cluster(cluster_id)
            supervisor = await instance.controller.wait_owned(ClusterId(cluster_id))
            await supervisor.wait_synced()
            for reconciler in supervisor.reconcilers.values():
                await reconciler.caught_up(cluster.resource_version)


async def sync_once(sim: Simulator, dsn: str, clusters: Sequence[str]) -> None:
    """Run an instance until it has caught up with every cluster, then stop it."""
    async with running(settings_for(sim, dsn, clusters)) as instance:
        await caught_up(instance, sim, clusters)


def execute(dsn: str, sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement on the CMDB behind the service's back; returns rows changed.

    Placeholders are `?`; they are rewritten for MySQL.
    """
    if dsn.startswith("sqlite:"):
        conn = sqlite3.connect(dsn.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return conn.execute(sql, params).rowcount
        finally:
            conn.close()
    u = urlsplit(dsn)
    mysql = pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                            user=u.username or "root", password=u.password or "",
                            database=u.path.lstrip("/"), autocommit=True)
    try:
        with mysql.cursor() as cur:
            return cur.execute(sql.replace("?", "%s"), tuple(params))
    finally:
        mysql.close()
