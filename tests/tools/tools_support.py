"""Helpers of the tools suite: the CLI as a subprocess, config files, SQL behind the back.

The in-process instance helpers (`running`, `caught_up`, `sync_once`, `populated`,
`settings_for`) live in `tests/instance_support.py`, shared with other suites; they are
re-exported here.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
import yaml
from instance_support import (  # noqa: F401 - re-exported for the tools suite
    BIZ_ID,
    caught_up,
    populated,
    running,
    settings_for,
    sync_once,
)

from synchronizer.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    """What a finished CLI run left behind."""

    code: int
    out: str
    err: str


async def cli(*args: str, timeout: float = 60.0, env_extra: dict[str, str] | None = None
              ) -> Result:
    """Run `python -m synchronizer ARGS` without blocking the loop (the simulator serves);
    the caller's `BKCMDB_*` variables are dropped, `env_extra` is added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")}
    env.update(env_extra or {})
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
