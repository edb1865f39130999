"""Churn of every kind, with status-only noise kept apart and counted.

Why: a CMDB of live objects must store what users ask about and ignore what merely moves
(DESIGN.md §7: a Node's heartbeat every few seconds on every Node, ready-replica counts,
restart counts). To prove it, a test needs a cluster that makes both kinds of change on
demand, at a controlled rate, and tells exactly how many of each it made, so it can assert
"2,000 heartbeats, zero rows written". `Controllers` is that: named streams of changes,
each a step function standing in for kubelet or a controller, started and stopped one by
one (over the admin API too), paced on the loop clock, or stepped synchronously by tests.

Streams (`STREAMS`): real changes,

- `pods`: a Pod dies and its controller replaces it (a StatefulSet's under the same name,
  a bare one by a new bare Pod), a label, the CMDB module annotations, a phase and IP;
- `workloads`: rollouts, scaling, StatefulSet updates, CronJob ticks, Jobs finishing,
  Deployments created and deleted (see `rollouts`);
- `nodes`: node-pool label, cordon/uncordon, kubelet upgrade, Ready flapping;
- `namespaces`: a namespace created with a small Deployment in it, or a churn-made one
  deleted with everything in it;

and noise, which changes only volatile status:

- `heartbeats`: the next Node's conditions get a new `lastHeartbeatTime` (round robin, so
  with `interval=N` every Node beats once every N seconds);
- `workload_status`: a Deployment's, StatefulSet's or DaemonSet's ready/available counts
  dip by one or recover;
- `pod_restarts`: a container restart count (and probe time) of a random Pod.

`counts` tallies the events each stream made, per resource, split into `real` and
`noise` (cascades included: a deleted Deployment's Pods count as real Pod changes).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .cluster import SimCluster
from .nodes import (
    cordon,
    flip_ready,
    heartbeat,
    make_namespace,
    relabel_node,
    timestamp,
    upgrade_kubelet,
)
from .pacing import paced
from .pods import change_phase, move_module, random_suffix, relabel, replica, touch_status
from .rollouts import WorkloadControllers
from .wire import SimError

REAL_STREAMS = ("pods", "workloads", "nodes", "namespaces")
NOISE_STREAMS = ("heartbeats", "workload_status", "pod_restarts")
STREAMS = REAL_STREAMS + NOISE_STREAMS
CHURN_NAMESPACE_PREFIX = "churn-ns-"
STATUS_KINDS = ("deployments", "statefulsets", "daemonsets")


@dataclass(slots=True)
class StreamProgress:
    """How far one stream has got; `target` None means until stopped."""

    stream: str
    target: int | None
    rate: float | None
    done: int = 0
    lagged: int = 0
    running: bool = True
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the admin API."""
        return asdict(self)


@dataclass(slots=True)
class ChurnCounts:
    """Events made, per resource id, as real changes and as status-only noise."""

    real: Counter[str] = field(default_factory=Counter)
    noise: Counter[str] = field(default_factory=Counter)

    def add(self, noise: bool, changes: dict[str, int]) -> None:
        """Count the events of one write."""
        (self.noise if noise else self.real).update(changes)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """JSON-ready form."""
        return {"real": dict(self.real), "noise": dict(self.noise)}


class Controllers:
    """kubelet and the controllers of one cluster, as named streams of changes."""

    def __init__(self, cluster: SimCluster, *, seed: int | None = None) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.counts = ChurnCounts()
        self.workloads = WorkloadControllers(cluster, self.rng, self.apply, self.node)
        self._runs: dict[str, tuple[asyncio.Task[None], StreamProgress]] = {}
        self._beat = 0
        self._serial = 0
        self._steps: dict[str, Callable[[], None]] = {
            "pods": self.pod_step, "workloads": self.workloads.step,
            "nodes": self.node_step, "namespaces": self.namespace_step,
            "heartbeats": self.heartbeat_step, "workload_status": self.workload_status_step,
            "pod_restarts": self.restart_step,
        }

    # -- running ----------------------------------------------------------------------------

    def apply(self, noise: bool, write: Callable[[], object]) -> None:
        """Run one write and count the events it made (none for a no-op)."""
        before = self.cluster.resource_version
        try:
            write()
        finally:
            self.counts.add(noise, self.cluster.changes(before))

    def step(self, stream: str, n: int = 1) -> None:
        """Make `n` changes of `stream` now, synchronously (for tests: no pacing)."""
        fn = self._function(stream)
        for _ in range(n):
            try:
                fn()
            except SimError:
                pass  # a raced or vanished object: the change is skipped

    def _function(self, stream: str) -> Callable[[], None]:
        try:
            return self._steps[stream]
        except KeyError:
            raise ValueError(f"unknown churn stream {stream!r}; streams: "
                             f"{', '.join(STREAMS)}") from None

    def start(self, stream: str, *, rate: float | None = None, events: int | None = None,
              interval: float | None = None) -> StreamProgress:
        """Run `stream` in the background (replacing a running one): `events` changes
        (None: until stopped) at `rate` per second (None: flat out). For `heartbeats`,
        `interval` seconds between two beats of one Node sets the rate from the Node
        count."""
        fn = self._function(stream)
        if interval is not None:
            if interval <= 0:
                raise ValueError("interval must be positive")
            rate = max(1, self.cluster.count("nodes")) / interval
        self.stop(stream)
        progress = StreamProgress(stream=stream, target=events, rate=rate)
        task = asyncio.get_running_loop().create_task(
            paced(fn, progress, events=events, rate=rate), name=f"churn-{stream}")
        self._runs[stream] = (task, progress)
        return progress

    def stop(self, stream: str | None = None) -> None:
        """Stop one stream (None: all); their progress stays readable."""
        for name, (task, _) in self._runs.items():
            if (stream is None or name == stream) and not task.done():
                task.cancel()

    async def wait(self, stream: str) -> StreamProgress:
        """Wait for a stream to finish (or be stopped) and return its progress."""
        task, progress = self._runs[stream]
        await asyncio.gather(task, return_exceptions=True)
        return progress

    async def aclose(self) -> None:
        """Stop every stream and wait until they are done."""
        self.stop()
        await asyncio.gather(*(task for task, _ in self._runs.values()),
                             return_exceptions=True)

    def progress(self, stream: str) -> StreamProgress | None:
        """The latest run of a stream, or None if it was never started."""
        entry = self._runs.get(stream)
        return None if entry is None else entry[1]

    def as_dict(self) -> dict[str, Any]:
        """Every stream's progress and the counts, for the admin API."""
        return {"streams": {name: p.as_dict() for name, (_, p) in self._runs.items()},
                "counts": self.counts.as_dict()}

    # -- helpers ----------------------------------------------------------------------------

    def node(self) -> tuple[str, str]:
        """A random schedulable Node (name, InternalIP); a made-up one if there are none
        (a cluster populated Pods only)."""
        for _ in range(8):
            key = self.cluster.random_key(self.rng, "nodes")
            if key is None:
                break
            node = self.cluster.get(None, key[1], resource="nodes")
            if node is None or node.get("spec", {}).get("unschedulable"):
                continue
            ips = [a["address"] for a in node["status"].get("addresses", [])
                   if a.get("type") == "InternalIP"]
            return key[1], ips[0] if ips else ""
        return (f"node-{self.rng.randrange(1, 200):03d}.cluster.local",
                f"9.134.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}")

    def _ts(self) -> str:
        return timestamp(self.cluster.now())

    def _update(self, noise: bool, ns: str, name: str, fn: Callable[[dict[str, Any]], object],
                resource: str) -> None:
        self.apply(noise, lambda: self.cluster.update(ns or None, name, fn,
                                                      resource=resource))

    # -- real changes -----------------------------------------------------------------------

    def pod_step(self) -> None:
        """One real Pod change (see the module docstring)."""
        key = self.cluster.random_key(self.rng, "pods")
        if key is None:
            return
        ns, name = key
        roll, rng = self.rng.random(), self.rng
        if roll < 0.4:
            self.replace_pod(ns, name)
        elif roll < 0.6:
            self._update(False, ns, name, lambda p: relabel(p, rng), "pods")
        elif roll < 0.8:
            self._update(False, ns, name, lambda p: move_module(p, rng), "pods")
        else:
            self._update(False, ns, name, lambda p: change_phase(p, rng), "pods")

    def replace_pod(self, ns: str, name: str) -> None:
        """A Pod dies; its controller (or whoever ran a bare one) starts another."""
        pod = self.cluster.get(ns, name)
        if pod is None:
            return
        self.apply(False, lambda: self.cluster.delete(ns, name))
        meta = pod["metadata"]
        owners = meta.get("ownerReferences") or []
        kind = owners[0]["kind"] if owners else None
        if kind == "StatefulSet":
            new_name = name
        elif meta.get("generateName"):
            new_name = meta["generateName"] + random_suffix(self.rng)
        else:
            self._serial += 1
            new_name = f"{name.rsplit('-r', 1)[0]}-r{self._serial}"
        for drop in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                     "deletionGracePeriodSeconds"):
            meta.pop(drop, None)
        node = self.node()
        fresh = replica(pod, new_name, rng=self.rng, annotated=None, node=node)
        if kind == "StatefulSet":
            fresh["metadata"]["labels"] = dict(meta.get("labels") or {})
        self.apply(False, lambda: self.cluster.create(fresh))

    def node_step(self) -> None:
        """One real Node change: pool label, cordon toggle, kubelet upgrade, Ready flap."""
        key = self.cluster.random_key(self.rng, "nodes")
        if key is None:
            return
        name, roll, rng, ts = key[1], self.rng.random(), self.rng, self._ts()
        if roll < 0.4:
            self._update(False, "", name, lambda n: relabel_node(n, rng), "nodes")
        elif roll < 0.75:
            self._update(False, "", name, lambda n: cordon(
                n, not n.get("spec", {}).get("unschedulable"), ts), "nodes")
        elif roll < 0.95:
            self._update(False, "", name, lambda n: upgrade_kubelet(n, rng), "nodes")
        else:
            self._update(False, "", name, lambda n: flip_ready(n, ts), "nodes")

    def namespace_step(self) -> None:
        """A namespace with a small Deployment appears, or a churn-made one is deleted."""
        mine = [k for k in self.cluster.sorted_keys("namespaces")
                if k.startswith(CHURN_NAMESPACE_PREFIX)]
        if mine and self.rng.random() < 0.5:
            victim = self.rng.choice(mine)
            self.apply(False, lambda: self.cluster.delete(None, victim,
                                                          resource="namespaces"))
            return
        self._serial += 1
        name = f"{CHURN_NAMESPACE_PREFIX}{self._serial}-{random_suffix(self.rng, 4)}"
        self.apply(False, lambda: self.cluster.create(make_namespace(name),
                                                      resource="namespaces"))
        self.workloads.new_deployment(name, 2)

    # -- noise ------------------------------------------------------------------------------

    def heartbeat_step(self) -> None:
        """The next Node (round robin) posts its status: new heartbeat times only."""
        order = self.cluster.sorted_keys("nodes")
        if not order:
            return
        name = order[self._beat % len(order)]
        self._beat += 1
        now = self.cluster.now()

        def beat(node: dict[str, Any]) -> None:
            last = max((c.get("lastHeartbeatTime") or "" for c in
                        node.get("status", {}).get("conditions", [])), default="")
            at = now
            if last:  # never the same second twice: a beat is always a change
                previous = datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=now.tzinfo)
                at = max(now, previous + timedelta(seconds=1))
            heartbeat(node, timestamp(at))
        self._update(True, "", name, beat, "nodes")

    def workload_status_step(self) -> None:
        """A workload's ready counts dip by one, or recover: status only."""
        kinds = [k for k in STATUS_KINDS if self.cluster.count(k)]
        if not kinds:
            return
        resource = self.rng.choice(kinds)
        key = self.cluster.random_key(self.rng, resource)
        if key is None:
            return

        def wobble(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            if resource == "daemonsets":
                want, fields = status.get("desiredNumberScheduled", 0), (
                    "numberReady", "numberAvailable")
            else:
                want = obj.get("spec", {}).get("replicas", 0)
                fields = ("readyReplicas", "availableReplicas")
            if not want:
                status["observedGeneration"] = obj["metadata"].get("generation", 1)
                return
            dipped = status.get(fields[0], want) >= want
            for f in fields:
                status[f] = want - 1 if dipped else want
        self._update(True, key[0], key[1], wobble, resource)

    def restart_step(self) -> None:
        """A container of a random Pod restarts: restart count and probe time only."""
        key = self.cluster.random_key(self.rng, "pods")
        if key is not None:
            rng = self.rng
            self._update(True, key[0], key[1], lambda p: touch_status(p, rng), "pods")
