"""`demo --duration 20` end to end, as a user runs it: a subprocess on a machine with
nothing but the virtualenv (SQLite, standalone, the simulator in-process).

While it runs, its HTTP endpoints must answer (the page, /status, /metrics at the URLs it
printed); when the duration ends it must stop churn, catch up, stop the instance, verify
against the simulator, report no drift in its parseable last line, and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys

import httpx
from tools_support import ROOT

URLS = re.compile(r"status page (http://\S+/) metrics (http://\S+/metrics)")
FINAL = re.compile(r"^verify: missing=(\d+) stale=(\d+) extra=(\d+) pods=(\d+)"
                   r" objects=\d+ result=(\w+)$", re.MULTILINE)


async def test_demo_runs_and_verifies_clean() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", "demo", "--duration", "20", "--pods", "2000",
        "--plain", "--port", "0", "--metric-port", "0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            urls = None
            while urls is None:
                line = (await proc.stdout.readline()).decode()
                assert line, f"demo ended early: {lines}"
                lines.append(line)
                urls = URLS.search(line)
            page_url, metrics_url = urls.groups()
            async with httpx.AsyncClient(timeout=10) as client:
                page = await client.get(page_url)
                assert page.status_code == 200 and "<title>bkcmdb-synchronizer" in page.text
                status = (await client.get(page_url + "status")).json()
                assert status["instance"] == "demo" and status["master"] is True
                metrics = await client.get(metrics_url)
                assert metrics.status_code == 200 and "bkcmdb_sync_is_master" in metrics.text
            rest = (await proc.stdout.read()).decode()
            code = await proc.wait()
            err = (await stderr_task).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = "".join(lines) + rest
    assert code == 0, (out, err)
    assert "Traceback" not in out + err
    assert " watching: active rows namespaces=" in out, out
    noise = re.findall(r" noise=(\d+)", out)
    assert noise and int(noise[-1]) > 0, out  # status-only churn ran (and wrote nothing)
    final = FINAL.search(out)
    assert final, out
    missing, stale, extra, pods, result = final.groups()
    assert (int(missing), int(stale), int(extra), result) == (0, 0, 0, "ok"), final.group(0)
    assert int(pods) > 1500


BK_FINAL = re.compile(r"^bkcmdb verify: missing=(\d+) stale=(\d+) extra=(\d+) objects=(\d+)"
                      r" waiting=\d+ result=(\w+)$", re.MULTILINE)


async def test_demo_with_bkcmdb_pushes_and_verifies_both_sinks() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKCMDB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synchronizer", "demo", "--duration", "15", "--pods", "800",
        "--plain", "--port", "0", "--metric-port", "0", "--bkcmdb", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(180):
        out_bytes, err_bytes = await proc.communicate()
    out, err = out_bytes.decode(), err_bytes.decode()
    assert proc.returncode == 0, (out, err)
    assert "Traceback" not in out + err
    assert re.search(r"bk-cmdb http://127\.0\.0\.1:\d+;", out), out
    live = re.findall(r" bk_objects=(\d+) bk_pending=\d+ bk_requests/s=([\d.]+)", out)
    assert live and max(int(n) for n, _ in live) > 500, out  # pods and their parents
    assert any(float(rate) > 0 for _, rate in live), out
    final = FINAL.search(out)
    assert final and final.group(5) == "ok", out
    lines = out.strip().splitlines()
    bk = BK_FINAL.fullmatch(lines[-1])
    assert bk, lines[-1]  # the last line is bk-cmdb's verify
    missing, stale, extra, objects, result = bk.groups()
    assert (int(missing), int(stale), int(extra), result) == (0, 0, 0, "ok"), lines[-1]
    table_objects = re.search(r"^verify: .* objects=(\d+) ", out, re.MULTILINE)
    assert table_objects and int(objects) == int(table_objects.group(1)) > 500, out
