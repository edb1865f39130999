"""The synchronizer side of the benchmarks, in a process of its own: `python -m bench.ours`.

It wires the production parts the way `synchronizer.clusters` does — a `KubeSource` of pods
(aiohttp + msgspec) over a `ClusterClient`, a `ClusterReconciler` with the Prometheus
metrics writing into the MariaDB store's `pods` table, and a `ClusterSupervisor` holding
the cluster's lease with a fence — for one cluster, and obeys commands from the driver
(`bench.common.Worker`), one JSON object per line on stdin, one reply per line on stdout:

    ping         reply once set-up (imports, store, tables) is done
    start        run the reconciler; reply once the first full sync is done (its seconds)
    resync       request a full sync and reply when it is done (its seconds)
    read_list    page through the same list with the same client, reading the bytes and
                 the continue token only (the floor of any re-sync): its seconds
    arm          reset the event counter and start logging commits (key, version,
                 time received, time committed)
    catch_up     {rv}: wait until everything up to rv is received and written; reply the
                 wall time of the first event after `arm`, of the catch-up, and counts
    commits      the commit log since `arm`: [[uid, version, received, committed], ...]
    exit         stop gracefully; reply peak RSS (VmHWM) and CPU seconds

Two thin wrappers observe without changing behaviour: `ObservedSource` timestamps the first
watch event, `ObservedStore` stamps each committed batch with `time.time()` right after
`apply` returns (the transaction has committed). Knobs: page size, senders, batch size,
linger, the garbage collector (`--gc`): `default`; `freeze` (gc.freeze() after set-up);
`freeze-index` (also freeze right after each full sync has loaded the stored index, the
one large long-lived heap of a sync); `off` (no cyclic GC at all, a bound).
`synchronizer run` calls gc.freeze() after start-up (since 7d2eb2d), so `--gc freeze` is
the service as shipped. (The earlier Pod decoders this bench could swap in were retired
with the kinds redesign; their figures stay in docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import orjson

from reconciler import (
    ApplyResult,
    Bookmark,
    ClusterId,
    ClusterReconciler,
    ClusterSupervisor,
    Event,
    Fence,
    Page,
    ReconcilerSettings,
    Record,
    StoredIndex,
    Unchanged,
)
from synchronizer.cmdb import CmdbStore, KindTable, open_store
from synchronizer.kinds import PODS
from synchronizer.kube import ClusterClient, KubeSource
from synchronizer.kube.client import LIST_READ_AHEAD
from synchronizer.metrics import PrometheusMetrics

from .common import vm_hwm_kib

GC_MODES = ("default", "freeze", "freeze-index", "off")


class _Continue(msgspec.Struct):
    continue_: str = msgspec.field(default="", name="continue")


class _PageMeta(msgspec.Struct):
    metadata: _Continue = msgspec.field(default_factory=_Continue)


_PAGE_META = msgspec.json.Decoder(_PageMeta)


async def read_list(client: ClusterClient, page_size: int) -> tuple[int, int]:
    """Read every page of the Pod list; (pages, bytes). Only the token is decoded."""
    token, pages, size = "", 0, 0
    while True:
        params = {"limit": str(page_size), **({"continue": token} if token else {})}
        async with client.request(PODS.resources[0].path, params, read_timeout=120,
                                  read_ahead=LIST_READ_AHEAD) as response:
            body = await response.read()
        pages, size = pages + 1, size + len(body)
        token = _PAGE_META.decode(body).metadata.continue_
        if not token:
            return pages, size


class GcClock:
    """Wall time spent in the cyclic garbage collector, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started
            self.collections[generation] += 1

    def snapshot(self) -> tuple[float, list[int]]:
        """Total GC seconds and collections per generation so far."""
        return sum(self.seconds), list(self.collections)


class ObservedSource:
    """A `Source` that counts watch events and notes when the first one arrived."""

    def __init__(self, inner: KubeSource) -> None:
        self.inner = inner
        self.events = 0
        self.first_event: float | None = None

    def arm(self) -> None:
        """Start counting afresh."""
        self.events = 0
        self.first_event = None

    def list(self, unchanged: Unchanged | None = None) -> AsyncIterator[Page]:
        """The inner source's list."""
        return self.inner.list(unchanged)

    async def watch(self, since: int) -> AsyncIterator[Event]:
        """The inner source's watch, observed."""
        async with contextlib.aclosing(self.inner.watch(since)) as stream:
            async for event in stream:
                if not isinstance(event, Bookmark):
                    if self.first_event is None:
                        self.first_event = time.time()
                    self.events += 1
                yield event


class ObservedStore:
    """The store, with a commit log and an optional `gc.freeze()` after loading an index."""

    def __init__(self, inner: CmdbStore, *, freeze_index: bool) -> None:
        self.inner = inner
        self.table: KindTable = inner.table(PODS)
        self.freeze_index = freeze_index
        self.log: list[tuple[str, int, float, float]] | None = None
        self.rows = 0
        self.written = 0

    def arm(self) -> None:
        """Start logging commits afresh."""
        self.log = []
        self.rows = self.written = 0

    async def load_index(self, cluster: ClusterId) -> StoredIndex:
        """The inner store's index (frozen out of the GC's sight with `freeze-index`)."""
        index = await self.table.load_index(cluster)
        if self.freeze_index:
            gc.freeze()
        return index

    async def apply(self, cluster: ClusterId, batch: Sequence[Record], *,
                    fence: Fence | None = None) -> ApplyResult:
        """The inner store's apply; the batch's keys and versions are logged once committed."""
        result = await self.table.apply(cluster, batch, fence=fence)
        self.rows += len(batch)
        self.written += result.written
        if self.log is not None:
            now = time.time()
            self.log.extend((r.key, r.version, r.query_at.timestamp(), now) for r in batch)
        return result

    async def reset_versions(self, cluster: ClusterId, *, fence: Fence | None = None) -> int:
        """The inner store's."""
        return await self.table.reset_versions(cluster, fence=fence)

    async def acquire(self, cluster: ClusterId, fence: Fence, ttl: float) -> bool:
        """The inner lease acquisition."""
        return await self.inner.acquire(cluster, fence, ttl)

    async def release(self, cluster: ClusterId, fence: Fence) -> None:
        """The inner lease release."""
        await self.inner.release(cluster, fence)


class Bench:
    """One reconciler and the commands that steer it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store: ObservedStore | None = None
        self.source: ObservedSource | None = None
        self.rec: ClusterReconciler | None = None
        self.supervisor: ClusterSupervisor | None = None
        self.task: asyncio.Task[None] | None = None
        self.generation = 0
        self._cpu = 0.0
        self.gc = GcClock()
        self._gc_mark = self.gc.snapshot()

    async def setup(self) -> None:
        """Open the store (creating the tables) and build the parts; no I/O to the cluster."""
        a = self.args
        inner = await open_store(a.dsn)
        metrics = PrometheusMetrics()
        self.store = ObservedStore(inner, freeze_index=a.gc == "freeze-index")
        self.source = ObservedSource(KubeSource(
            ClusterClient.from_url(a.url, cluster_id=a.cluster, watches=1), kind=PODS,
            biz_id=a.biz_id, page_size=a.page_size, watch_timeout=300,
            inactivity=a.inactivity, metrics=metrics, owns_client=True))
        settings = ReconcilerSettings(senders=a.senders, batch_size=a.batch_size,
                                      linger=a.linger, full_sync_interval=3600)
        fence = Fence(owner=f"bench-{os.getpid()}", epoch=1)
        self.rec = ClusterReconciler(
            cluster=ClusterId(a.cluster), kind="pods", source=self.source, store=self.store,
            settings=settings, metrics=metrics, fence=fence)
        self.supervisor = ClusterSupervisor(
            cluster=ClusterId(a.cluster), reconcilers=[self.rec], leases=self.store,
            fence=fence, settings=settings, metrics=metrics)
        if a.gc in ("freeze", "freeze-index"):
            gc.collect()
            gc.freeze()
        elif a.gc == "off":
            gc.disable()
        self._gc_mark = self.gc.snapshot()

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """Run one command; return its reply."""
        reply = await self._handle(command)
        seconds, counts = self.gc.snapshot()
        if command["cmd"] != "commits":
            reply["gc_s"] = seconds - self._gc_mark[0]
            reply["gc_collections"] = [a - b for a, b in zip(counts, self._gc_mark[1],
                                                               strict=True)]
        self._gc_mark = (seconds, counts)
        return reply

    async def _handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command["cmd"]
        rec, store, source = self.rec, self.store, self.source
        assert rec is not None and store is not None and source is not None
        if cmd == "ping":
            return {}
        if cmd == "start":
            started = time.perf_counter()
            cpu = time.process_time()
            assert self.supervisor is not None
            self.task = asyncio.create_task(self.supervisor.run())
            self.generation = await rec.wait_synced(0)
            return {"seconds": time.perf_counter() - started, "rows": store.rows,
                    "cpu": time.process_time() - cpu, "vmhwm_kib": vm_hwm_kib()}
        if cmd == "resync":
            rows = store.rows
            started = time.perf_counter()
            cpu = time.process_time()
            rec.request_full_sync("bench")
            self.generation = await rec.wait_synced(self.generation)
            return {"seconds": time.perf_counter() - started, "rows": store.rows - rows,
                    "cpu": time.process_time() - cpu, "vmhwm_kib": vm_hwm_kib()}
        if cmd == "read_list":
            started = time.perf_counter()
            cpu = time.process_time()
            pages, size = await read_list(source.inner.client, self.args.page_size)
            return {"seconds": time.perf_counter() - started, "pages": pages, "bytes": size,
                    "cpu": time.process_time() - cpu}
        if cmd == "arm":
            source.arm()
            store.arm()
            self._cpu = time.process_time()
            return {}
        if cmd == "catch_up":
            await rec.caught_up(int(command["rv"]))
            return {"done": time.time(), "first_event": source.first_event,
                    "events": source.events, "rows": store.rows, "written": store.written,
                    "cpu": time.process_time() - self._cpu}
        if cmd == "commits":
            return {"commits": store.log or []}
        if cmd == "exit":
            if self.task is not None and self.supervisor is not None:
                self.supervisor.stop()
                await self.task
            await self.source.inner.aclose()
            await store.inner.close()
            usage = os.times()
            return {"vmhwm_kib": vm_hwm_kib(), "cpu": usage.user + usage.system}
        raise ValueError(f"unknown command {cmd!r}")


async def main_async(args: argparse.Namespace) -> None:
    """Set up, then serve commands from stdin until `exit`."""
    bench = Bench(args)
    await bench.setup()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        if not line.strip():
            continue
        command = orjson.loads(line)
        try:
            reply = await bench.handle(command)
        except Exception as exc:  # reported to the driver, which raises it
            logging.exception("command %s failed", command.get("cmd"))
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(orjson.dumps(reply).decode() + "\n")
        sys.stdout.flush()
        if command.get("cmd") == "exit":
            return


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's options (the driver passes them)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the cluster's API server URL")
    p.add_argument("--dsn", required=True, help="mysql://... of the CMDB database")
    p.add_argument("--cluster", required=True)
    p.add_argument("--biz-id", type=int, default=2)
    p.add_argument("--page-size", type=int, default=500)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--linger", type=float, default=0.02)
    p.add_argument("--inactivity", type=float, default=600.0,
                   help="watch inactivity bound (long: the driver holds streams on purpose)")
    p.add_argument("--gc", choices=GC_MODES, default="default")
    return p.parse_args(argv)


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    main()
