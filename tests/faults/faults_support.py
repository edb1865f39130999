"""What the fault-matrix tests share beyond the scale-out helpers: small fleets (standalone
or on ZooKeeper) with test settings, MariaDB fault proxies, a reader of /metrics by label,
and a background sampler of the worst moment (peak memory, queue depth and lag).

Why a sampler: "bounded memory and queues" (B in TEST-MATRIX.md) is a claim about the
worst moment of a fault, which a single look before or after would miss; sampling every
`SAMPLE` seconds does not synchronise anything, it only watches. What is asserted on the
peaks is a bound with a reason, never a duration.

The keys bound: the sender queues hold at most one pending record per pod (a newer
version replaces the queued one), so their depth can never exceed the number of distinct
pods the cluster ever had: the pods at start plus every pod churn created since
(`keys_ever`). A queue of events instead of keys would grow with the number of changes,
which the churn makes several times larger.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from scaleout_oracles import GUARD
from scaleout_support import CLUSTERS as ALL_CLUSTERS
from scaleout_support import POLL, Fleet, Instance, SimProcess
from tcpproxy import TcpProxy
from zkserver import ZkServer

CLUSTERS = ALL_CLUSTERS[:3]
"""Three clusters: one to break, two to show the others are unaffected."""
PODS = 60
"""Pods per cluster at start."""
SAMPLE = 0.2
"""Seconds between two samples of the peak sampler."""
RSS_SLACK = 64 * 2**20
"""How much more memory an instance may hold at the worst moment of a fault than before
it. Its queued state is at most one record per pod (a few hundred, a few KB each); an
instance that kept every event, or leaked per retry, would pass that soon after."""
PREFIX = "bkcmdb_sync_"

_SERIES = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?$')
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def fleet_maker(tmp: Path, sim: SimProcess, made: list[Fleet]) -> Callable[..., Fleet]:
    """A factory of fleets for one test (each kept in `made`, for the teardown)."""

    def make(dsn: str, *, zk: ZkServer | None = None, session_timeout: float = 3.0,
             lease_ttl: float = 10.0, clusters: list[str] | None = None,
             **sync: Any) -> Fleet:
        fleet = Fleet(tmp=tmp, sim=sim, dsn=dsn, zk_hosts=zk.hosts if zk else None,
                      zk_root=f"/faults-{uuid.uuid4().hex[:10]}",
                      session_timeout=session_timeout, lease_ttl=lease_ttl,
                      clusters=list(clusters or CLUSTERS), sync=sync)
        made.append(fleet)
        return fleet

    return make


class MySqlProxies:
    """TCP fault proxies in front of MariaDB servers."""

    def __init__(self) -> None:
        self.made: list[TcpProxy] = []

    async def front(self, dsn: str) -> tuple[TcpProxy, str]:
        """A proxy in front of the server of `dsn`, and `dsn` rewritten to go through it."""
        u = urlsplit(dsn)
        proxy = await TcpProxy(u.hostname or "127.0.0.1", u.port or 3306).start()
        self.made.append(proxy)
        auth = u.netloc.rpartition("@")[0]
        netloc = (auth + "@" if auth else "") + proxy.address
        return proxy, urlunsplit(u._replace(netloc=netloc))

    async def close(self) -> None:
        """Close every proxy."""
        for proxy in self.made:
            await proxy.close()


# -- /metrics by label -------------------------------------------------------------------------


def labels_of(series: str) -> tuple[str, dict[str, str]]:
    """`name{a="1",b="2"}` -> (name, {a: 1, b: 2})."""
    match = _SERIES.match(series)
    if match is None:
        return series, {}
    labels = {m["key"]: m["value"] for m in _LABEL.finditer(match["labels"] or "")}
    return match["name"], labels


def total(samples: Mapping[str, float], name: str, **match: str) -> float:
    """Sum of `bkcmdb_sync_<name>` over the series whose labels include `match`."""
    out = 0.0
    for series, value in samples.items():
        family, labels = labels_of(series)
        if family == PREFIX + name and all(labels.get(k) == v for k, v in match.items()):
            out += value
    return out


async def until_metrics(inst: Instance, check: Callable[[dict[str, float]], str | None], *,
                        timeout: float = GUARD) -> dict[str, float]:
    """Poll the instance's /metrics until `check` returns None (else it says why not).

    The instance is another process: there is no event to await, so this is a bounded poll.
    """
    why: str | None = "never looked"
    try:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    samples = await inst.metrics()
                    why = check(samples)
                    if why is None:
                        return samples
                await asyncio.sleep(POLL)  # another process: a bounded poll
    except TimeoutError:
        raise AssertionError(f"{inst.id}: not within {timeout}s: {why}\n{inst.tail(15)}"
                             ) from None


async def readyz(inst: Instance) -> tuple[int, str]:
    """(status code, body) of the instance's /readyz."""
    assert inst.http is not None
    reply = await inst.http.get("/readyz")
    return reply.status_code, reply.text.strip()


async def churned(sim: SimProcess, cluster: str) -> dict[str, Any]:
    """The progress of the cluster's (last) churn run: done, created, recreated, ..."""
    return dict((await sim.http.get(f"/_sim/clusters/{cluster}/churn")).json() or {})


async def keys_ever(sim: SimProcess, cluster: str) -> int:
    """How many distinct pods the cluster ever had: PODS at start plus every pod churn
    created (a re-create under the same name is a new pod, with a new uid)."""
    progress = await churned(sim, cluster)
    return PODS + int(progress.get("created", 0)) + int(progress.get("recreated", 0))


# -- the worst moment -------------------------------------------------------------------------


@dataclass
class Peaks:
    """Samples one instance's RSS (from /proc) and its per-cluster queue depth and lag
    gauges every `SAMPLE` seconds while in use; keeps the highest of each."""

    inst: Instance
    rss: int = 0
    depth: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Peaks:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self.rss = max(self.rss, self.inst.rss())
            with contextlib.suppress(httpx.HTTPError, ValueError):
                samples = await self.inst.metrics()
                for series, value in samples.items():
                    family, labels = labels_of(series)
                    cluster = labels.get("cluster", "")
                    if family == PREFIX + "sender_queue_depth":
                        self.depth[cluster] = max(self.depth.get(cluster, 0.0), value)
                    elif family == PREFIX + "lag_seconds":
                        self.lag[cluster] = max(self.lag.get(cluster, 0.0), value)
                self.samples += 1
            await asyncio.sleep(SAMPLE)  # the sampling period (watching, not waiting)
