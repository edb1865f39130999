"""The status page shows every registry's health, the conflicts and the held clusters, in
a real headless browser (Debian's chromium, Playwright) against a real instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from registries_support import Home, running, settings_for

from synchronizer.settings import ClusterSettings
from synchronizer.simulator import Simulator

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/ensure-services.sh)"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def test_registries_conflicts_and_held_clusters_on_the_page(
        sim: Simulator, home: Home, sqlite_dsn: str, browser: Browser) -> None:
    settings = settings_for(sim, sqlite_dsn, clusters=[
        ClusterSettings(id="c1", biz_id=1, server=sim.url_for("c1"))])
    async with running(settings) as instance:
        await home.create("dup", {"clusterId": "c1", "bizId": 2, "server": sim.url_for("c1")})
        await home.create("paused", {"clusterId": "c2", "bizId": 2,
                                     "server": sim.url_for("c2"), "paused": True})
        await home.until_status("dup", reason="Conflict")
        await home.until_status("paused", reason="Paused")
        page = await browser.new_page()
        failures: list[str] = []
        page.on("pageerror", lambda exc: failures.append(str(exc)))
        await page.goto(f"http://127.0.0.1:{instance.http.bound[0]}/")
        await page.wait_for_function(
            """() => ['static', 'crd', 'topology'].every(
                   (r) => document.querySelector(`tr[data-registry="${r}"]`))""",
            timeout=WAIT_MS)
        crd_clusters = await page.text_content(
            'tr[data-registry="crd"] td[data-field="clusters"]')
        assert crd_clusters == "2"
        await page.wait_for_function(
            "() => document.getElementById('held').textContent.includes('c2: Paused')",
            timeout=WAIT_MS)
        conflicts = await page.text_content("#conflicts")
        assert conflicts == "cluster c1 is declared by both static and crd; using static"
        assert await page.is_visible("#held") and await page.is_visible("#conflicts")
        assert not failures
