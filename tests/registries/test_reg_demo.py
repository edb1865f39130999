"""`demo --crd`, as a user runs it: the demo cluster is registered by a SyncCluster, and
the status the operator writes is shown filling in, up to Running and Ready/Synced."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATUS = re.compile(r"^demo: SyncCluster bkcmdb/demo: state=(\w+) owner=(\S+)"
                    r" Ready=(\S+) \((\w+)\) pods=(\S+)", re.MULTILINE)


async def test_demo_shows_a_sync_cluster_and_its_status() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", "demo", "--crd", "--duration", "8",
        "--pods", "300", "--plain", "--port", "0", "--metric-port", "0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, (text, err.decode())
    assert "created SyncCluster bkcmdb/demo" in text
    states = STATUS.findall(text)
    assert states, text
    state, owner, ready, reason, pods = states[-1]
    assert (state, owner, ready, reason) == ("Running", "demo", "True", "Synced"), states
    assert int(pods) > 0
    assert "result=ok" in text
