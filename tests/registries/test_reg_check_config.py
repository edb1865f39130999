"""`check-config --connect` reaches each configured registry, as a user runs it (a
subprocess): the home cluster of the SyncClusters and the BCS cluster manager; one line
naming the key per registry it cannot reach, exit 2, never a token."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from registries_support import HOME_TOKEN

from synchronizer.simulator import Simulator

GATEWAY_TOKEN = "gateway-s3cret"


async def check(path: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", "check-config", "--config", str(path),
        "--connect", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


def config(tmp_path: Path, sqlite_dsn: str, *, home: str, home_token: str, bcs: str,
           bcs_token: str) -> Path:
    doc: dict[str, Any] = {"cmdb": {"dsn": sqlite_dsn}, "registries": {
        "crd": {"enabled": True, "server": home, "token": home_token},
        "http": {"url": bcs, "token": bcs_token}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_connect_reaches_each_registry(sim: Simulator, tmp_path: Path,
                                             sqlite_dsn: str) -> None:
    async with Simulator() as gateway:  # a gateway's token guards all its /clusters/
        gateway.bcs.token = GATEWAY_TOKEN
        good = config(tmp_path, sqlite_dsn, home=sim.url_for("home"), home_token=HOME_TOKEN,
                      bcs=gateway.base_url, bcs_token=GATEWAY_TOKEN)
        code, out, err = await check(good)
    assert (code, err) == (0, ""), err
    assert "reachable" in out

    bad = config(tmp_path, sqlite_dsn, home=sim.url_for("home"), home_token="wrong-home",
                 bcs="http://127.0.0.1:9", bcs_token="wrong-gateway")
    code, out, err = await check(bad)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith("bkcmdb-synchronizer: registries.crd: ") and "401" in lines[0]
    assert lines[1].startswith("bkcmdb-synchronizer: registries.http: BCS cluster manager"
                               " http://127.0.0.1:9")
    assert "Traceback" not in err and "wrong-home" not in err and "wrong-gateway" not in err
