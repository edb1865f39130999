"""`demo --bkcmdb`: the demo with the bk-cmdb simulator as a second sink.

What it adds to `demo`, all in the same process: a `BkCmdbSimulator` speaking the real
HTTP API (API-gateway auth with a throw-away secret), seeded the way an operator's CMDB
would be — the demo's business with the default module `bkbcs`/`bkbcs`, every set and
module the simulated pods are annotated with, and one host per simulated node's InternalIP
(so every node can be made, and every pod on it) — and a `bkcmdb:` section pointing the
instance at it. The live view gains a line of what bk-cmdb holds for the cluster, what is
still pending, and the request rate; at the end, once the tables have caught up, the demo
waits for the pusher to settle (two clean pushes with nothing owed), stops the instance
and runs `verify --bkcmdb` beside `verify`, and its last line is that report.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator
from synchronizer.settings import BkCmdbConfig, Settings

from .verify import Report

APP_CODE = "bkcmdb-demo"
PERIOD = 0.5
"""Seconds between pushes of the demo cluster (a push with nothing new makes no request)."""
SETTLE_TIMEOUT = 60.0
"""Seconds the final push may take to settle before the demo verifies anyway."""


@dataclass(slots=True)
class BkLine:
    """What the view shows of bk-cmdb."""

    objects: int = 0
    pending: int = 0
    requests: int = 0
    requests_per_second: float = 0.0
    state: str = "waiting"
    last_error: str = ""


class DemoBkCmdb:
    """The bk-cmdb simulator of one demo, and the numbers the view shows of it."""

    def __init__(self, biz_id: int) -> None:
        self.biz_id = biz_id
        self.sim = BkCmdbSimulator(auth=AuthConfig(mode="gateway", app_code=APP_CODE,
                                                   app_secret=secrets.token_hex(16)))
        self._last: tuple[float, int] | None = None
        self._rate = 0.0

    async def start(self, cluster: Any) -> None:
        """Seed the business, its modules and a host per node; serve on loopback."""
        from synchronizer.simulator.pods import MODULES, SETS

        hosts = self.sim.model.hosts
        hosts.add_business(self.biz_id, "demo")
        hosts.add_module(self.biz_id, "bkbcs", "bkbcs")
        for set_name in SETS:
            for module in MODULES:
                hosts.add_module(self.biz_id, set_name, module)
        for node in cluster.objects("nodes"):
            for address in node.get("status", {}).get("addresses", []):
                if address.get("type") == "InternalIP":
                    hosts.add_host(address["address"], biz_id=self.biz_id)
        await self.sim.start("127.0.0.1", 0)

    def settings(self, settings: Settings) -> Settings:
        """`settings` with a `bkcmdb:` section pointing at the simulator."""
        config = BkCmdbConfig(url=self.sim.base_url, app_code=APP_CODE,
                              app_secret=SecretStr(self.sim.auth.app_secret),
                              period=PERIOD, rate=200, burst=200)
        return settings.model_copy(update={"bkcmdb": config})

    def line(self, instance: Any, cluster: str, now: float) -> BkLine:
        """The view's numbers now (`now` on the loop clock, for the request rate)."""
        model = self.sim.model
        found = [c["id"] for c in model.clusters.values() if c["uid"] == cluster]
        objects = 0
        if found:
            cid = found[0]
            objects = 1 + sum(1 for table in (model.namespaces, model.nodes, model.pods)
                              for r in table.values() if r["bk_cluster_id"] == cid)
            objects += sum(1 for t in model.workloads.values() for r in t.values()
                           if r["bk_cluster_id"] == cid)
        requests = sum(self.sim.stats.requests.values())
        if self._last is not None and now > self._last[0]:
            self._rate = (requests - self._last[1]) / (now - self._last[0])
        self._last = (now, requests)
        doc = instance.bkcmdb.cluster_status(cluster) if instance.bkcmdb else {}
        return BkLine(objects=objects, pending=int(doc.get("pending", 0)), requests=requests,
                      requests_per_second=self._rate, state=str(doc.get("state", "waiting")),
                      last_error=str(doc.get("last_error") or ""))

    async def settle(self, instance: Any, cluster: str) -> bool:
        """Wait for two more pushes of `cluster`, the last clean with nothing owed."""
        from synchronizer.bkcmdb_service import WAITING

        service = instance.bkcmdb
        if service is None:
            return False
        board = service.board
        start = board.clusters[cluster].pushes if cluster in board.clusters else 0

        def settled() -> bool:
            st = board.clusters.get(cluster)
            return (st is not None and st.pushes >= start + 2 and not st.last_error
                    and all(r in WAITING for r in st.pending_by_reason))
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await service.wait(settled)
        except TimeoutError:
            return False
        return True

    async def verify(self, settings: Settings) -> Report:
        """`verify --bkcmdb` against the simulator."""
        from .verify_bkcmdb import run_bkcmdb_verify

        return await run_bkcmdb_verify(settings)

    async def stop(self) -> None:
        """Stop serving."""
        await self.sim.stop()


def final_line(report: Report) -> str:
    """`bkcmdb verify: missing=0 stale=0 extra=0 objects=2400 waiting=12 result=ok`."""
    waiting = sum(sum(getattr(c, "waiting", {}).values()) for c in report.clusters)
    result = {0: "ok", 1: "drift"}.get(report.exit_code, "error")
    return (f"bkcmdb verify: missing={report.total('missing')} stale={report.total('stale')} "
            f"extra={report.total('extra')} objects={sum(c.listed for c in report.clusters)} "
            f"waiting={waiting} result={result}")
