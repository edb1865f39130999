"""The idle fleet's floor: CPU per bookmark over many quiet watches, by how deep a chunk goes.

Why this exists: an idle fleet's CPU is bookmarks (the fleet issue's pessimistic case:
every watch bookmarks each second), and each bookmark is a network chunk of its own on
its own connection. How much of a bookmark's cost is ours, how much the HTTP client's, and
how much any client on this event loop must pay, decides where a cut can come from
(docs/benchmarks.md "The bookmark floor and stopping a fleet"). Three readers of the
same watches, in this process, on uvloop (what `synchronizer run` uses):

- **ours**: `KubeSource.watch` consumed the way the engine's watch loop does: its own
  transport (design 010: httptools in `data_received`, framing, typed decode, the
  bookmark counter), bookmarks that do not move the version never handed up; counted
  by the `events_total` metric, as the instance counts them;
- **aiohttp**: the same requests through the same `ClusterClient`, the body read with
  `readany()` and dropped (aiohttp's parser, stream and one task wake per chunk);
- **protocol**: a bare `asyncio.Protocol` that sends the request and counts what
  `data_received` gets (uvloop's read and callback: the floor of any client).

The simulated API server (its own process) holds `--clusters` clusters of two Pods, every
kind on (eight watches a cluster), bookmarking each watch every second. Each run opens
every watch, waits `--settle` seconds, then takes this process's CPU time over
`--window` seconds; runs alternate between readers and medians are printed as JSON.

    .venv/bin/python -m bench.watch_floor
    .venv/bin/python -m bench.watch_floor --clusters 200 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import uvloop

from synchronizer.kinds import KINDS
from synchronizer.kube import ClusterClient, KubeSource
from synchronizer.metrics import PrometheusMetrics

from .common import SimProcess, load, machine, median

Reader = Callable[[KubeSource, int, list[int]], Awaitable[None]]


def _params(version: int) -> dict[str, str]:
    return {"watch": "1", "allowWatchBookmarks": "true", "resourceVersion": str(version),
            "timeoutSeconds": "3600"}


async def _ours(source: KubeSource, version: int, seen: list[int]) -> None:
    async for event in source.watch(version):  # counted by the metric, not here
        if event.version > version:
            version = event.version


async def _aiohttp(source: KubeSource, version: int, seen: list[int]) -> None:
    async with source.client.request(source.resource.path, _params(version),
                                     read_timeout=None) as response:
        read = response.content.readany
        while await read():
            seen[0] += 1


class _Counting(asyncio.Protocol):
    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def data_received(self, data: bytes) -> None:
        self.seen[0] += 1


def _protocol(base: str) -> Reader:
    async def read(source: KubeSource, version: int, seen: list[int]) -> None:
        url = urlsplit(base + "/clusters/" + source.cluster_id + source.resource.path)
        query = "&".join(f"{k}={v}" for k, v in _params(version).items())
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(
            lambda: _Counting(seen), url.hostname, url.port)
        try:
            transport.write(f"GET {url.path}?{query} HTTP/1.1\r\nHost: {url.hostname}\r\n"
                            "Accept: application/json\r\n\r\n".encode())
            await asyncio.Event().wait()
        finally:
            transport.close()
    return read


def _bookmarks(metrics: PrometheusMetrics) -> int:
    """Bookmarks decoded so far (the `events_total` series of type BOOKMARK)."""
    return int(sum(sample.value for family in metrics.registry.collect()
                   for sample in family.samples
                   if sample.name == "bkcmdb_sync_events_total"
                   and sample.labels.get("type") == "BOOKMARK"))


async def _run(sim: SimProcess, clusters: list[str], reader: Reader, *, settle: float,
               window: float) -> dict[str, float]:
    clients = [ClusterClient.from_url(sim.cluster_url(c), cluster_id=c) for c in clusters]
    metrics = PrometheusMetrics()
    sources = [KubeSource(client, kind=kind, resource=resource, biz_id=2, inactivity=3600,
                          metrics=metrics)
               for client in clients for kind in KINDS.values() for resource in kind.resources]
    versions = []
    for source in sources:
        version = 0
        async for page in source.list():
            version = max(version, page.version)
        versions.append(version)
    seen = [0]
    tasks = [asyncio.create_task(reader(s, v, seen)) for s, v in zip(sources, versions,
                                                                       strict=True)]
    try:
        await asyncio.sleep(settle)
        n0, cpu0 = seen[0] + _bookmarks(metrics), time.process_time()
        await asyncio.sleep(window)
        cpu, n = time.process_time() - cpu0, seen[0] + _bookmarks(metrics) - n0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()
    return {"watches": len(sources), "bookmarks": n, "us_per_bookmark": 1e6 * cpu / max(n, 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--window", type=float, default=15.0)
    args = p.parse_args(argv)
    sim = SimProcess()
    try:
        clusters = [f"floor-{n:04d}" for n in range(args.clusters)]
        for n, cluster in enumerate(clusters):
            sim.create(cluster, pods=2, seed=n)
        readers: dict[str, Reader] = {"ours": _ours, "aiohttp": _aiohttp,
                                      "protocol": _protocol(sim.url)}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in readers}
        for _ in range(args.runs):
            for name, reader in readers.items():
                runs[name].append(uvloop.run(_run(sim, clusters, reader, settle=args.settle,
                                                  window=args.window)))
        per = {name: median([r["us_per_bookmark"] for r in rs]) for name, rs in runs.items()}
        summary = {f"{name}_us_per_bookmark": round(v, 1) for name, v in per.items()}
        summary |= {
            "ours_over_aiohttp": round(per["ours"] / per["aiohttp"], 2),
            "aiohttp_over_protocol": round(per["aiohttp"] / per["protocol"], 2),
            "ours_ms_per_cluster_s": round(8 * per["ours"] / 1000, 3),
            "protocol_ms_per_cluster_s": round(8 * per["protocol"] / 1000, 3),
        }
        print(json.dumps({"machine": machine(), "load": load(), "clusters": args.clusters,
                          "summary": summary, "runs": runs}, indent=1))
    finally:
        sim.close()


if __name__ == "__main__":
    main()
