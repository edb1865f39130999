"""`python -m synchronizer.bkcmdb.simulator`: a standalone bk-cmdb for demos and benchmarks.

Why a process of its own: a demo or a benchmark runs the synchronizer against it from
outside, and keeps the simulator's CPU off the synchronizer's. It seeds businesses with the
default `bkbcs`/`bkbcs` module and a block of hosts (so kube nodes with those IPs can be
created), prints its base URL on one line of stdout once it serves, runs until SIGTERM or
SIGINT and exits 0 after a clean stop. Everything else is set over `/_sim/` (see `admin`).

    python -m synchronizer.bkcmdb.simulator --port 18090 --auth gateway \
        --businesses 1,2 --hosts-per-business 50
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys

from .server import BkCmdbSimulator
from .wire import AuthConfig

log = logging.getLogger("synchronizer.bkcmdb.simulator")
HOST_NETWORK = ipaddress.ip_network("10.0.0.0/8")
"""Seeded hosts get addresses from here: data only, nothing is ever sent to them."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every option has a default good for a quick demo."""
    p = argparse.ArgumentParser(prog="python -m synchronizer.bkcmdb.simulator",
                                description="Serve a simulated bk-cmdb (kube and pod APIs).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18090, help="0 picks a free port")
    p.add_argument("--auth", choices=("gateway", "direct"), default="gateway")
    p.add_argument("--app-code", default="bcs")
    p.add_argument("--app-secret-env", default="BKCMDB_SIM_APP_SECRET",
                   help="environment variable holding the accepted app secret")
    p.add_argument("--businesses", default="1", help="comma-separated business ids to seed")
    p.add_argument("--hosts-per-business", type=int, default=20)
    return p.parse_args(argv)


def seed(sim: BkCmdbSimulator, businesses: list[int], hosts_per_business: int) -> None:
    """Each business gets the default module and `hosts_per_business` hosts."""
    addresses = HOST_NETWORK.hosts()
    for biz in businesses:
        sim.model.hosts.add_business(biz)
        sim.model.hosts.add_module(biz, "bkbcs", "bkbcs")
        for _ in range(hosts_per_business):
            sim.model.hosts.add_host(str(next(addresses)), biz_id=biz)


async def serve(args: argparse.Namespace) -> int:
    """Seed, serve until a stop signal, stop."""
    auth = AuthConfig(mode=args.auth, app_code=args.app_code,
                      app_secret=os.environ.get(args.app_secret_env, "sim-secret"))
    sim = BkCmdbSimulator(auth=auth)
    try:
        businesses = [int(b) for b in args.businesses.split(",") if b.strip()]
    except ValueError:
        print(f"simulator: --businesses must be integers, got {args.businesses!r}",
              file=sys.stderr)
        return 2
    seed(sim, businesses, args.hosts_per_business)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await sim.start(args.host, args.port)
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(url, flush=True)
    log.info("serving bk-cmdb (%s auth) for businesses %s", args.auth, businesses)
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
