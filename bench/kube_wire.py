"""The Kubernetes wire alone: CPU per watch event and list-page read time, httpx vs aiohttp.

Why this exists: an instance owning hundreds of clusters spends most of its idle and
steady-state CPU receiving watch chunks (events and bookmarks), so the HTTP client's cost
per chunk bounds the whole fleet (docs/designs/008-fleet-writer.md). This driver measures
only the transport: no parsing, no projection, no database.

Method: the simulator (its own process) holds a cluster of `--pods` Pods. Two watch
figures, both this process's CPU time from the first chunk to the last, per event:

- trickle: the watch is open and the simulator makes `--trickle` changes at `--rate` per
  second, so (almost) every event arrives in a chunk of its own: the steady state of a
  fleet, where the cost per chunk is what counts;
- replay: a history of `--events` changes made flat out before the reader connects, read
  from the revision before them as fast as possible: many events per chunk (a catch-up).

A list run reads the full PodList (one page) and reports its wall time. Runs alternate
between the two clients; medians of `--runs` runs each, and ratios, are printed as JSON.

    .venv/bin/python -m bench.kube_wire
    .venv/bin/python -m bench.kube_wire --pods 5000 --events 20000 --runs 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from .common import SimProcess, machine, median


class Target:
    """How many change events a reader waits for; lowered once a trickle's count is known."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.reached = asyncio.Event()

    def settle(self, events: int) -> None:
        self.events = events
        self.reached.set()


Reader = Callable[[str, dict[str, str], Target], Awaitable[float]]


async def _watch_httpx(url: str, params: dict[str, str], target: Target) -> float:
    async with (httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
                client.stream("GET", url, params=params) as response):
        return await _count(response.aiter_bytes(), target)


async def _watch_aiohttp(url: str, params: dict[str, str], target: Target) -> float:
    async with (aiohttp.ClientSession() as session,
                session.get(url, params=params,
                            timeout=aiohttp.ClientTimeout(total=None)) as response):
        return await _count(response.content.iter_any(), target)


async def _count(chunks: object, target: Target) -> float:
    """CPU seconds per change event from the first chunk until the target is met
    (bookmark lines are read and paid for, but not counted as events)."""
    seen, start = 0, 0.0
    async for chunk in chunks:  # type: ignore[attr-defined]
        if not start:
            start = time.process_time()
        seen += chunk.count(b"\n") - chunk.count(b'"type":"BOOKMARK"')
        if seen >= target.events:
            break
    return (time.process_time() - start) / seen


async def _list_httpx(url: str) -> float:
    async with httpx.AsyncClient(timeout=120) as client:
        start = time.perf_counter()
        body = (await client.get(url)).content
        assert body
        return time.perf_counter() - start


async def _list_aiohttp(url: str) -> float:
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
        assert body
        return time.perf_counter() - start


async def _trickle(sim: SimProcess, watch: Reader, url: str, events: int,
                   rate: float) -> float:
    """Open a watch at the current revision, then have the simulator churn at `rate`."""
    params = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "600",
              "resourceVersion": str(sim.stats("wire")["resourceVersion"])}
    target = Target(events)
    reading = asyncio.create_task(watch(url, params, target))
    await asyncio.to_thread(sim.wait_watchers, "wire", 1)
    await asyncio.to_thread(sim.timed_churn, "wire", events, rate, seed=3)
    made = await asyncio.to_thread(sim.timed_churn_wait, "wire")
    target.settle(len(made))  # an update may change nothing: fewer events than asked
    return await reading


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--events", type=int, default=10000)
    p.add_argument("--trickle", type=int, default=2000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args(argv)
    with SimProcess() as sim:
        sim.create("wire", pods=a.pods)
        base = sim.cluster_url("wire") + "/api/v1/pods"
        before = str(sim.stats("wire")["resourceVersion"])
        sim.churn_flat_out("wire", a.events, seed=2)
        params = {"watch": "1", "resourceVersion": before, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "600"}
        clients: dict[str, Reader] = {"httpx": _watch_httpx, "aiohttp": _watch_aiohttp}
        per_event: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        trickle: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        list_s: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        for _ in range(a.runs):
            for name, reader in clients.items():
                trickle[name].append(
                    asyncio.run(_trickle(sim, reader, base, a.trickle, a.rate)))
            for name, reader in clients.items():
                per_event[name].append(asyncio.run(reader(base, params, Target(a.events))))
            list_s["httpx"].append(asyncio.run(_list_httpx(base)))
            list_s["aiohttp"].append(asyncio.run(_list_aiohttp(base)))
        size = len(httpx.get(base, timeout=120).content)
    slow = {k: round(median(v) * 1e6, 1) for k, v in trickle.items()}
    watch = {k: round(median(v) * 1e6, 1) for k, v in per_event.items()}
    listing = {k: round(median(v) * 1e3, 1) for k, v in list_s.items()}
    print(json.dumps({
        "machine": machine(), "pods": a.pods, "events": a.events, "runs": a.runs,
        "trickle_rate": a.rate, "trickle_events": a.trickle,
        "trickle_cpu_us_per_event": slow,
        "trickle_ratio_httpx_to_aiohttp": round(slow["httpx"] / slow["aiohttp"], 2),
        "replay_cpu_us_per_event": watch,
        "replay_ratio_httpx_to_aiohttp": round(watch["httpx"] / watch["aiohttp"], 2),
        "list_bytes": size, "list_ms": listing,
        "list_ratio_httpx_to_aiohttp": round(listing["httpx"] / listing["aiohttp"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
