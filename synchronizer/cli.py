"""The command line: `run`, `demo`, `verify`, `check-config` (see the contract's table).

Every user error ends in one line on stderr and exit code 2 (bad config, unreachable
service with `--connect`); a clean stop of `run` exits 0. Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from . import __version__, malloc
from .logs import setup_logging
from .settings import ConfigError, Settings, load_settings

PROG = "bkcmdb-synchronizer"
log = logging.getLogger("synchronizer")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Keep a CMDB true to the Pods of"
                                     " many Kubernetes clusters.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one instance until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, help="YAML config file")

    demo = sub.add_parser("demo", help="the whole pipeline on embedded defaults")
    demo.add_argument("--duration", type=float, default=None,
                      help="seconds to run before stopping by itself (default: until Ctrl-C)")
    demo.add_argument("--pods", type=int, default=3000, help="pods in the simulated cluster")
    demo.add_argument("--rate", type=float, default=50.0, help="churn events per second")
    demo.add_argument("--port", type=int, default=8888, help="port of the status page")
    demo.add_argument("--metric-port", type=int, default=9999, help="port of /metrics")
    demo.add_argument("--db", default=None, help="SQLite file (default: a temporary one)")
    demo.add_argument("--plain", action="store_true", help="no live view, plain log lines")
    demo.add_argument("--crd", action="store_true",
                      help="register the cluster with a SyncCluster resource and show the"
                      " status the operator writes")
    demo.add_argument("--bkcmdb", action="store_true",
                      help="also push to a simulated BlueKing CMDB, and verify it at the end")

    verify = sub.add_parser("verify", help="compare the clusters with the CMDB (read-only)")
    verify.add_argument("--config", required=True, help="YAML config file")
    verify.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument("--bkcmdb", action="store_true",
                        help="compare the clusters with the BlueKing CMDB instead")

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", required=True, help="YAML config file")
    check.add_argument("--connect", action="store_true",
                       help="also reach the CMDB and every cluster")
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


async def _run(settings: Settings) -> int:
    from .app import Instance
    from .heap import HeapKeeper

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    heap = HeapKeeper()
    instance = Instance(settings, heap=heap)
    # Everything imported and built so far lives as long as the process: move it out of
    # the cyclic collector's sight, so the collections a 100k-pod full sync triggers do
    # not rescan it (docs/benchmarks.md, "Full sync"); the keeper freezes again whenever
    # the heap settles.
    heap.start()
    # The loop shares the GIL with one thread now and then (the /metrics page is rendered
    # in one: a fleet's page is a second of pure Python). Every socket call of the loop
    # lets that thread in, and by default it keeps the GIL 5 ms before handing it back:
    # a store transaction of 60 round trips then took 1.6 s during a scrape. 0.5 ms makes
    # the hand-back ten times faster; with one thread running it costs nothing.
    sys.setswitchinterval(0.0005)
    try:
        await instance.run(stop)
    except OSError as exc:  # a port already taken
        return _fail(str(exc), 1)
    if instance.failed:
        return _fail(instance.failed, 1)
    return 0


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless the settings ask for the standard loop. An instance's CPU is mostly
    the loop's own work per socket read — thousands of watches, each bookmarking — and
    libuv does that part in C (docs/benchmarks.md, "Fleet": the loop)."""
    if settings.instance.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and `python -m synchronizer`."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        if args.command == "run":
            settings = load_settings(args.config)
            malloc.tune()  # before the first list page: see the module
            with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
                return runner.run(_run(settings))
        if args.command == "check-config":
            from .tools.check import check_config

            return asyncio.run(check_config(args.config, connect=args.connect))
        if args.command == "verify":
            from .tools.verify import verify_command

            settings = load_settings(args.config)
            if args.bkcmdb:
                from .tools.verify_bkcmdb import verify_bkcmdb_command

                return asyncio.run(verify_bkcmdb_command(settings, args.cluster, args.json))
            return asyncio.run(verify_command(settings, clusters=args.cluster,
                                              as_json=args.json))
        if args.command == "demo":
            from .tools.demo import demo_command

            return asyncio.run(demo_command(args))
    except ConfigError as exc:
        return _fail(f"config: {exc}")
    except KeyboardInterrupt:
        return 130
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
