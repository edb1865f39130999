"""The status page in a real headless browser (Debian's chromium, driven by Playwright).

The instance runs in this process against the simulator; the browser loads GET /, which
polls /status. The test waits for DOM changes (Playwright's `wait_for_function`), never
sleeps: first the cluster's row showing `watching` and its pod count, then, after Pods are
created in the simulator, the count moving to the new number.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from tools_support import caught_up, populated, running, settings_for

from synchronizer.simulator import Simulator, make_pod

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium; Playwright never downloads a browser of its own here."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/ensure-services.sh)"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def _cell(cluster: str, field: str) -> str:
    return f'tr[data-cluster="{cluster}"] td[data-field="{field}"]'


async def test_page_shows_clusters_and_follows_changes(
    sim: Simulator, sqlite_dsn: str, browser: Browser, tmp_path: Path
) -> None:
    cluster = await populated(sim, "east", 40, nodes=4, workloads=6)
    await populated(sim, "west", 7, seed=5)
    async with running(settings_for(sim, sqlite_dsn, ["east", "west"])) as instance:
        await caught_up(instance, sim, ["east", "west"])
        base = f"http://127.0.0.1:{instance.http.bound[0]}"
        page = await browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        failures: list[str] = []
        page.on("pageerror", lambda exc: failures.append(str(exc)))
        await page.goto(base + "/")
        assert await page.title() == "bkcmdb-synchronizer"

        await page.wait_for_function(
            """([east, west]) => {
                const e = document.querySelector(east), w = document.querySelector(west);
                return e && w && e.textContent === "40" && w.textContent === "7";
            }""", arg=[_cell("east", "pods"), _cell("west", "pods")], timeout=WAIT_MS)
        assert await page.text_content(_cell("east", "state")) == "watching"
        assert await page.text_content("#instance") == "test"
        assert await page.text_content("#ready") == "ready"
        assert await page.text_content("#role") == "master"
        assert await page.text_content("#cluster-count") == "2"
        last_sync = await page.text_content(_cell("east", "last_full_sync"))
        assert last_sync and "ago" in last_sync

        rng = random.Random(11)
        for n in range(5):
            cluster.create(make_pod("ns-1", f"late-{n}", rng=rng))
        await caught_up(instance, sim, ["east"])
        await page.wait_for_function(
            "(sel) => document.querySelector(sel)?.textContent === '45'",
            arg=_cell("east", "pods"), timeout=WAIT_MS)
        await page.wait_for_function(
            "() => document.querySelector('#total-pods').textContent === '52'",
            timeout=WAIT_MS)
        # every kind: its column, its own table, and the pods grouped by their workloads
        nodes = cluster.count("nodes")
        assert await page.text_content(_cell("east", "nodes")) == str(nodes)
        assert await page.text_content(_cell("west", "nodes")) == "0"
        for resource in ("pods", "nodes", "namespaces", "deployments", "cronjobs"):
            sel = f'tr[data-cluster="east"][data-resource="{resource}"] td[data-field="state"]'
            assert await page.text_content(sel) == "watching"
        await page.wait_for_function(
            "() => document.querySelectorAll('#workloads tbody tr').length > 1",
            timeout=WAIT_MS)
        top = await page.text_content("#workloads tbody tr td[data-field=pods]")
        assert top and int(top) > 1
        await page.screenshot(path=str(tmp_path / "status.png"), full_page=True)

    # Self-contained: the page fetched nothing but itself and ./status from the instance.
    assert requested and all(url.startswith(base + "/") for url in requested), requested
    assert {url.removeprefix(base).split("?")[0] for url in requested} <= {
        "/", "/status", "/status/workloads"}
    assert failures == []


async def test_page_shows_the_bkcmdb_push(sim: Simulator, sqlite_dsn: str, browser: Browser,
                                          tmp_path: Path) -> None:
    from pydantic import SecretStr

    from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator
    from synchronizer.settings import BkCmdbConfig

    cluster = await populated(sim, "east", 30, nodes=3, workloads=4)
    bk = BkCmdbSimulator(auth=AuthConfig(mode="direct"))
    bk.model.hosts.add_business(5, "game")
    ips = [a["address"] for n in cluster.objects("nodes") for a in n["status"]["addresses"]
           if a["type"] == "InternalIP"]
    for ip in ips[1:]:  # the first node has no host: its pods wait, and the page says so
        bk.model.hosts.add_host(ip, biz_id=5)
    async with bk:
        settings = settings_for(sim, sqlite_dsn, ["east"]).model_copy(update={
            "bkcmdb": BkCmdbConfig(url=bk.base_url, auth="direct", period=0.2, rate=500,
                                   burst=500, app_secret=SecretStr(""))})
        async with running(settings) as instance:
            await caught_up(instance, sim, ["east"])
            page = await browser.new_page()
            failures: list[str] = []
            page.on("pageerror", lambda exc: failures.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{instance.http.bound[0]}/")
            row = '#bkcmdb tr[data-cluster="east"]'
            await page.wait_for_function(
                """(row) => {
                    const st = document.querySelector(row + ' td[data-field="state"]');
                    const why = document.querySelector(row + ' td[data-field="reasons"]');
                    return st && st.textContent === "in sync" && why.textContent.includes(
                        "no_host 1");
                }""", arg=row, timeout=WAIT_MS)
            assert await page.is_visible("#bkcmdb-section")
            assert bk.base_url in (await page.text_content("#bkcmdb-target") or "")
            requests = await page.text_content(f'{row} td[data-field="requests"]')
            assert requests and int(requests.replace(",", "")) > 0
            assert "ago" in (await page.text_content(f'{row} td[data-field="last_push"]') or "")
            await page.screenshot(path=str(tmp_path / "bkcmdb.png"), full_page=True)
    assert failures == []
