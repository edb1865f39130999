"""The simulated API server process of the benchmarks: `python -m bench.simproc`.

It is the simulator (`synchronizer.simulator.Simulator`, with its `/_sim/` admin API for
populate, churn, stall, compact and stats) plus one thing the benchmarks need that the
simulator does not offer: a *timed* churn, which makes changes at a fixed rate and keeps,
for every change, the resourceVersion it produced, the Pod's uid and the wall time
(`time.time()`) at which the change happened. The latency benchmark joins that log with the
synchronizer's commit log, so it measures change → row committed exactly, per event.

The timed churn is served on a second, small HTTP port (the simulator builds its own
application, so routes cannot be added to it):

    POST /bench/{cluster}/timed_churn   {events, rate, seed, mode?} -> 202
    GET  /bench/{cluster}/timed_churn   {running, done, log?: [[rv, uid, t], ...]} (?log=1)

`mode: scheduled` (the bk-cmdb push benchmark) makes only changes bk-cmdb can see, on real
Nodes, and logs `namespace/name` of the pod bk-cmdb must make instead of the uid.

On start it prints one JSON line `{"url": ..., "control": ...}` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from synchronizer.simulator import SimCluster, SimError, Simulator, make_pod, pod_name
from synchronizer.simulator.pods import move_module, mutate, relabel


@dataclass
class TimedChurn:
    """Progress and log of one timed churn run."""

    target: int
    done: int = 0
    running: bool = True
    error: str | None = None
    log: list[tuple[int, str, float]] = field(default_factory=list)
    """(resourceVersion, uid, wall time) of every change made."""


def _scheduled_change(cluster: SimCluster, rng: random.Random, namespaces: list[str],
                      nodes: list[str]) -> tuple[dict[str, Any], str]:
    """One change bk-cmdb can see, on a real Node (the bk-cmdb push benchmark): half the time
    a Pod is replaced by a new one (delete, then create), else an existing Pod's label
    changes (which bk-cmdb, with no pod update, sees as a new pod). Returns the event's
    object and `namespace/name` of the pod bk-cmdb must now make."""
    key = cluster.random_key(rng)
    if key is None or rng.random() < 0.5:
        if key is not None:
            cluster.delete(*key)
        ns = rng.choice(namespaces)
        app = f"{ns.removeprefix('ns-')}-churn{rng.randrange(10)}"
        name = pod_name(rng, app)
        obj = cluster.create(make_pod(ns, name, rng=rng, app=app, node_name=rng.choice(nodes)))
        return obj, f"{ns}/{name}"
    ns, name = key
    return cluster.update(ns, name, lambda p: relabel(p, rng)), f"{ns}/{name}"


def _change(cluster: SimCluster, rng: random.Random, namespaces: list[str]) -> dict[str, Any]:
    """One realistic change (15% create, 15% delete, 20% module move, 50% in-place update);
    returns the object the event carries (its metadata holds uid and resourceVersion)."""
    roll = rng.random()
    key = cluster.random_key(rng)
    if key is None or roll < 0.15:
        ns = rng.choice(namespaces)
        app = f"{ns.removeprefix('ns-')}-churn{rng.randrange(10)}"
        return cluster.create(make_pod(ns, pod_name(rng, app), rng=rng, app=app))
    ns, name = key
    if roll < 0.30:
        return cluster.delete(ns, name)
    if roll < 0.50:
        return cluster.update(ns, name, lambda p: move_module(p, rng))
    return cluster.update(ns, name, lambda p: mutate(p, rng))


async def timed_churn(cluster: SimCluster, run: TimedChurn, *, rate: float,
                      rng: random.Random, scheduled: bool = False) -> None:
    """Make `run.target` changes at `rate` per second, each stamped with its wall time.

    Every change is scheduled at start + i / rate and made as soon as the loop reaches
    that time (asyncio's sleep resolution is about a millisecond); the stamp is taken right
    after the change, when the event is in the history that the watch streams read.
    """
    loop = asyncio.get_running_loop()
    namespaces = sorted({k.partition("/")[0] for k in cluster.sorted_keys()}) or ["default"]
    nodes = [n["metadata"]["name"] for n in cluster.objects("nodes")
             if not n.get("spec", {}).get("unschedulable")]
    start = loop.time()
    try:
        for i in range(run.target):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            before = cluster.resource_version
            try:
                if scheduled:
                    obj, key = _scheduled_change(cluster, rng, namespaces, nodes)
                else:
                    obj = _change(cluster, rng, namespaces)
                    key = obj["metadata"]["uid"]
            except SimError:
                continue
            if cluster.resource_version != before:  # an update may change nothing
                run.log.append((cluster.resource_version, key, time.time()))
            run.done += 1
    except Exception as exc:  # reported through the control API
        run.error = repr(exc)
        raise
    finally:
        run.running = False


def control_routes(sim: Simulator) -> list[web.RouteDef]:
    """The `/bench/` routes over `sim`'s clusters."""
    runs: dict[str, TimedChurn] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def start(request: web.Request) -> web.Response:
        cluster = sim.cluster(request.match_info["id"])
        body = orjson.loads(await request.read())
        run = TimedChurn(target=int(body["events"]))
        runs[cluster.id] = run
        task = asyncio.create_task(timed_churn(
            cluster, run, rate=float(body["rate"]), rng=random.Random(body.get("seed")),
            scheduled=body.get("mode") == "scheduled"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.Response(body=orjson.dumps({"target": run.target}), status=202,
                            content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        run = runs[request.match_info["id"]]
        reply: dict[str, Any] = {"running": run.running, "done": run.done, "error": run.error,
                                 "changes": len(run.log)}
        if request.query.get("log"):
            reply["log"] = run.log
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    return [web.post("/bench/{id}/timed_churn", start),
            web.get("/bench/{id}/timed_churn", status)]


async def serve(args: argparse.Namespace) -> int:
    """Serve the simulator and the control port until SIGTERM/SIGINT."""
    sim = Simulator(bookmark_interval=args.bookmark_interval, history_limit=None,
                    seed=args.seed)
    url = await sim.start(args.host, 0)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(control_routes(sim))
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
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bookmark-interval", type=float, default=1.0)
    return asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
