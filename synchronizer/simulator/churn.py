"""Workloads for a simulated cluster: populate it, then churn it at a steady rate.

Why here and not in tests: tests, the `demo` command, benchmarks and the admin API all
need the same two things, a cluster filled with realistic Pods spread over namespaces and
apps, and a background stream of changes shaped like a real cluster's (rollouts, module
moves, phase changes, deletes and re-creates, status-only noise), paced on the loop clock.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass
from typing import Any

from .cluster import SimCluster
from .pods import make_pod, move_module, mutate, pod_name, replica
from .wire import SimError

CHUNK = 2000
"""Pods created between yields to the loop while populating, so the server stays live."""
BURST = 200
"""Most changes made between yields to the loop while churning."""
SLICE = 0.005
"""Most seconds spent changing between yields, so requests are served between slices."""


@dataclass(slots=True)
class ChurnProgress:
    """How far a churn run has got; `target` None means it runs until cancelled."""

    target: int | None
    done: int = 0
    created: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    recreated: int = 0
    lagged: int = 0
    """Times the run fell a second behind its rate (the machine is too slow) and skipped."""
    running: bool = True
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the admin API."""
        return asdict(self)


def _apps(namespace: str, rng: random.Random, count: int) -> list[str]:
    return [f"{namespace.removeprefix('ns-')}-{rng.choice(('api', 'web', 'job', 'svc'))}{i}"
            for i in range(count)]


async def populate(
    cluster: SimCluster,
    *,
    pods: int,
    namespaces: int = 4,
    annotated_fraction: float = 0.5,
    rng: random.Random,
    apps_per_namespace: int = 5,
    compact: bool = True,
) -> int:
    """Create `pods` Pods spread over `namespaces` namespaces `ns-0...`; returns how many.

    With `compact` the creation history is compacted away afterwards, so the cluster looks
    like one that has been running for a while (and 100,000 ADDED events do not use up the
    history budget that churn needs).
    """
    templates: list[tuple[str, str, dict[str, Any]]] = []
    for n in range(max(1, namespaces)):
        ns = f"ns-{n}"
        for app in _apps(ns, rng, apps_per_namespace):
            templates.append((ns, app, make_pod(ns, pod_name(rng, app), rng=rng, app=app)))
    created = 0
    while created < pods:
        batch = []
        for _ in range(min(CHUNK, pods - created)):
            ns, app, template = templates[rng.randrange(len(templates))]
            pod = replica(template, pod_name(rng, app), rng=rng,
                          annotated=rng.random() < annotated_fraction)
            batch.append(pod)
        created += cluster.create_many(batch, copy=False)
        await asyncio.sleep(0)
    if compact:
        cluster.compact()
    return created


def _one(cluster: SimCluster, rng: random.Random, progress: ChurnProgress,
         namespaces: list[str], size: int, annotated_fraction: float) -> None:
    """One change: 15% create, 15% delete, 3% delete and re-create under the same name,
    19% module move, the rest an in-place update; creates and deletes lean towards `size`."""
    key = cluster.random_key(rng)
    roll = rng.random()
    if key is None or (roll < 0.15 and len(cluster) <= size) or len(cluster) < size * 0.9:
        ns = rng.choice(namespaces)
        app = f"{ns.removeprefix('ns-')}-churn{rng.randrange(10)}"
        cluster.create(make_pod(ns, pod_name(rng, app), rng=rng, app=app,
                                annotated=rng.random() < annotated_fraction))
        progress.created += 1
        return
    ns, name = key
    if roll < 0.30:
        cluster.delete(ns, name)
        progress.deleted += 1
    elif roll < 0.33:
        pod = cluster.delete(ns, name)
        for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
            pod["metadata"].pop(field, None)
        cluster.create(pod)
        progress.recreated += 1
    elif roll < 0.52:
        cluster.update(ns, name, lambda p: move_module(p, rng))
        progress.moved += 1
    else:
        cluster.update(ns, name, lambda p: mutate(p, rng))
        progress.updated += 1


async def churn(
    cluster: SimCluster,
    *,
    events: int | None,
    rate: float | None,
    rng: random.Random,
    annotated_fraction: float = 0.5,
    progress: ChurnProgress | None = None,
) -> ChurnProgress:
    """Make `events` changes (None: forever) at `rate` per second (None/0: flat out).

    The Pod count stays near where it started (creates make up for deletes). Pacing uses
    the loop clock: a short lag is caught up, but a run more than a second behind (an
    overloaded machine) drops its backlog rather than starving the server's requests.
    """
    progress = progress or ChurnProgress(target=events)
    loop = asyncio.get_running_loop()
    namespaces = sorted({k.partition("/")[0] for k in cluster.sorted_keys()}) or ["default"]
    size = len(cluster)
    start = loop.time()
    try:
        while events is None or progress.done < events:
            left = BURST if events is None else min(BURST, events - progress.done)
            if rate:
                due = int((loop.time() - start) * rate) + 1 - progress.done
                if due <= 0:
                    await asyncio.sleep((progress.done + 1) / rate - (loop.time() - start))
                    continue
                if due > max(rate, BURST):  # more than a second behind: overloaded, so
                    start = loop.time() - progress.done / rate  # forget the backlog
                    progress.lagged += 1
                n = min(due, left)
            else:
                n = left
            slice_end = loop.time() + SLICE
            for _ in range(n):
                if loop.time() > slice_end:
                    break
                try:
                    _one(cluster, rng, progress, namespaces, size, annotated_fraction)
                except SimError:
                    pass  # a no-op or a raced key: it still counts as an attempted change
                progress.done += 1
            await asyncio.sleep(0)
    except Exception as exc:  # reported through the admin API, not lost in a task
        progress.error = repr(exc)
        raise
    finally:
        progress.running = False
    return progress
