"""Pod churn for a simulated cluster: a steady stream of Pod changes at a given rate.

Why here and not in tests: tests, the `demo` command, benchmarks and the admin API all
need a background stream of Pod changes shaped like a real cluster's (module moves, phase
changes, image bumps, deletes and re-creates, status-only noise), paced on the loop clock.
This is the first simulator's churn, Pods only (filling a cluster is `populate`; changes of
every kind, with noise kept apart from real changes, are `controllers`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from .cluster import SimCluster
from .pacing import paced
from .pods import make_pod, move_module, mutate, pod_name


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
    namespaces = sorted({k.partition("/")[0] for k in cluster.sorted_keys()}) or ["default"]
    size = len(cluster)
    await paced(lambda: _one(cluster, rng, progress, namespaces, size, annotated_fraction),
                progress, events=events, rate=rate)
    return progress
