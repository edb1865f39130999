"""The bk-cmdb simulator process of the benchmarks: `python -m bench.bksimproc`.

The simulator (`synchronizer.bkcmdb.simulator.BkCmdbSimulator`, with its `/_sim/` admin
API), seeded with one business, its default module and a host for each of the first
`--hosts` simulated node IPs (`synchronizer.simulator.nodes.node_ip`), plus what the
benchmark needs to measure and that the simulator does not keep:

- objects per route (the sum of the batch sizes, where `/_sim/stats` keeps only the largest),
  from which the batch fill follows;
- for every pod created, its namespace, name and the wall time (`time.time()`) the create
  was applied, which the benchmark joins with the churn's log of when each pod changed in
  the Kubernetes simulator: the end-to-end lag of a pod change reaching bk-cmdb.

    GET  /bench/log     {objects: {route: n}, requests: {route: n}, pods: [[ns, name, t], ...]}
    POST /bench/reset   forget the log and the counts

On start it prints one JSON line `{"url": ...}` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator, Stats
from synchronizer.simulator.nodes import node_ip

BIZ = 2


@dataclass(slots=True)
class CountingStats(Stats):
    """The simulator's statistics, plus the objects each route carried in all."""

    objects: Counter[str] = field(default_factory=Counter)

    def record(self, route: str, batch: int) -> None:
        """Count one request and its objects."""
        Stats.record(self, route, batch)
        self.objects[route] += batch

    def reset(self) -> None:
        """Start counting afresh."""
        Stats.reset(self)
        self.objects.clear()


class Recorder:
    """Pod creation times, fed by wrapping the model's pod create."""

    def __init__(self, sim: BkCmdbSimulator) -> None:
        self.pods: list[tuple[str, str, float]] = []
        model = sim.model
        create_pods = model.create_pods

        def created(body: Any) -> Any:
            answer = create_pods(body)
            now = time.time()
            for pid in answer.get("ids", []):
                row = model.pods[pid]
                self.pods.append((row["namespace"], row["name"], now))
            return answer

        model.create_pods = created  # type: ignore[method-assign]


def routes(sim: BkCmdbSimulator, recorder: Recorder) -> list[web.RouteDef]:
    """The `/bench/` routes."""
    stats = sim.stats
    assert isinstance(stats, CountingStats)

    async def log(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({
            "objects": dict(stats.objects), "requests": dict(stats.requests),
            "pods": recorder.pods}), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        recorder.pods.clear()
        stats.reset()
        return web.Response(body=b"{}", content_type="application/json")

    return [web.get("/bench/log", log), web.post("/bench/reset", reset)]


async def serve(args: argparse.Namespace) -> int:
    """Seed, serve the simulator and the bench routes until SIGTERM/SIGINT."""
    sim = BkCmdbSimulator(auth=AuthConfig(mode="direct"))
    sim.stats = CountingStats()
    hosts = sim.model.hosts
    hosts.add_business(BIZ, "bench")
    hosts.add_module(BIZ, "bkbcs", "bkbcs")
    for n in range(args.hosts):
        hosts.add_host(node_ip(n), biz_id=BIZ)
    recorder = Recorder(sim)
    url = await sim.start(args.host, 0)
    app = web.Application()
    app.add_routes(routes(sim, recorder))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, 0).start()
    control = f"http://{args.host}:{runner.addresses[0][1]}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(orjson.dumps({"url": url, "control": control}).decode(), flush=True)
    await stop.wait()
    await runner.cleanup()
    await sim.stop()
    return 0


def main() -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--hosts", type=int, default=1000, help="hosts for node_ip(0..N-1)")
    return asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
