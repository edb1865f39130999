"""`python -m synchronizer.simulator`: a standalone simulated API server.

Why a process of its own: fault tests restart the API server (same port, versions
continuing, or a new incarnation) and benchmarks keep the server's CPU off the
synchronizer's, which needs a separate process. It prints its base URL on one line of
stdout once it serves (so a parent can wait for that line), runs until SIGTERM or SIGINT,
and exits 0 after a clean stop.

    python -m synchronizer.simulator --port 18080 --clusters default,cluster-b \
        --pods 1000 --churn-rate 50
    python -m synchronizer.simulator --clusters BCS-K8S-40001 --pods 5000 --nodes 100 \
        --workloads 200 --bcs --bcs-token secret
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys

from .populate import populate
from .server import Simulator

log = logging.getLogger("synchronizer.simulator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every option has a default good for a quick demo."""
    p = argparse.ArgumentParser(prog="python -m synchronizer.simulator",
                                description="Serve simulated Kubernetes clusters of Pods.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18080, help="0 picks a free port")
    p.add_argument("--clusters", default="default",
                   help="comma-separated cluster ids; each is served at /clusters/<id>")
    p.add_argument("--pods", type=int, default=1000, help="pods per cluster at start")
    p.add_argument("--nodes", type=int, default=0,
                   help="nodes per cluster; with --workloads, a consistent cluster of every "
                        "kind (0 and 0: pods only, as the first simulator)")
    p.add_argument("--workloads", type=int, default=0, help="workloads per cluster")
    p.add_argument("--namespaces", type=int, default=4)
    p.add_argument("--annotated-fraction", type=float, default=0.5)
    p.add_argument("--churn-rate", type=float, default=0.0,
                   help="changes per second per cluster, forever (0: no churn)")
    p.add_argument("--bookmark-interval", type=float, default=1.0)
    p.add_argument("--history-limit", type=int, default=100_000,
                   help="events kept before automatic compaction")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bcs", action="store_true",
                   help="register every cluster in the BCS cluster manager's registry "
                        "(/bcsapi/v4/clustermanager/v1/cluster)")
    p.add_argument("--bcs-token", default=None,
                   help="the BCS gateway token: required by the registry and, when set, "
                        "by every request under /clusters/<id>/")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    """Build, populate and serve the clusters until a stop signal."""
    sim = Simulator(bookmark_interval=args.bookmark_interval,
                    history_limit=args.history_limit, seed=args.seed)
    ids = [c.strip() for c in args.clusters.split(",") if c.strip()]
    sim.bcs.token = args.bcs_token
    if args.bcs:
        for cluster_id in ids:
            sim.bcs.add(cluster_id)
    for n, cluster_id in enumerate(ids):
        cluster = sim.add_cluster(cluster_id)
        await populate(cluster, pods=args.pods, namespaces=args.namespaces,
                       annotated_fraction=args.annotated_fraction,
                       rng=random.Random(args.seed + n), nodes=args.nodes,
                       workloads=args.workloads)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await sim.start(args.host, args.port)
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    for n, cluster_id in enumerate(ids):
        if args.churn_rate > 0:
            sim.start_churn(cluster_id, events=None, rate=args.churn_rate, seed=args.seed + n)
    print(url, flush=True)
    log.info("serving clusters %s with %d pods each", ",".join(ids), args.pods)
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
