"""The admin API's operations: apply, read and delete topologies, all or nothing.

`put` is the replication-as-a-service pattern (DESIGN.md §10), in this order:
1. validate the whole document (`document.parse`: every problem at once, 400);
2. refuse clusters another registry or topology already declares (409: the merge would
   silently prefer the other one, which is never what the caller meant);
3. verify every participant in parallel - its API server answers a one-Pod list with
   the given credentials (`synchronizer.kube.probe`) - and refuse with each failure (409);
4. store it, naming the version read in step 2 (`RegistryTables.write_topology`): if
   another instance wrote the topology meanwhile, start again from step 2 against what is
   stored now, so concurrent writers are serialised and the last one wins whole;
5. deploy: wait until the master has assigned every cluster with its new spec and each
   owner reports it reconciling (lease held, kinds running), and removed clusters are
   unassigned. If an owner reports that the cluster cannot even be opened (its
   credentials cannot be resolved: `SecretNotFound`, `InvalidCredentials`), the previous
   document is restored and the answer is 409 with that failure: nothing half-applied.

The wait is bounded by `DEPLOY_TIMEOUT` (30 s): the master sees a write within a second
(`registries.topology.POLL`) and assigns at once; owners start within a second or two.
Reconciling does not mean the first full sync is over - for a big cluster that takes
longer than any sensible HTTP call - so the answer gives each cluster's state (`pending`:
not yet assigned with this spec; `assigned`: its owner has not reported it; then the
owner's state: `syncing`, `watching`, `degraded`...) and `deployed` says whether all were
reconciling before the bound. Re-applying the stored document is answered at once
without verifying or writing anything.

In-process, writes of one topology are serialised by a lock; across instances by the
version check of step 4. Nothing here ever returns a token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from synchronizer.kube import ClusterEndpoint
from synchronizer.registries.spec import ClusterSpec, Origin
from synchronizer.registries.tables import RegistryTables, TopologyRow
from synchronizer.registries.topology import specs_of
from synchronizer.summaries import Summaries, Summary

from .document import Invalid, canonical, check_name, digest, parse, public

DEPLOY_TIMEOUT = 30.0
"""Seconds a PUT or DELETE waits for the clusters to be (un)assigned and reconciling."""
VERIFY_TIMEOUT = 10.0
"""Seconds each participant's API server has to answer the verification request."""
VERIFY_CONCURRENCY = 16
"""Participants verified at once."""
WRITE_ATTEMPTS = 5
"""Times a PUT starts over because another instance wrote the same topology meanwhile."""
WATCH_EVERY = 0.25
"""Seconds between two looks at the assignment and the owners' summaries while deploying."""
FATAL_REASONS = frozenset({"SecretNotFound", "InvalidCredentials"})
"""Owner reasons that mean the cluster cannot be opened at all: the write is rolled back."""
DELETED_DIGEST = "deleted"

Probe = Callable[[ClusterEndpoint], Awaitable[None]]
Placement = Mapping[str, tuple[str, ClusterSpec | None]]
"""cluster id → (owner instance, the spec it was assigned with)."""


class FleetView(Protocol):
    """What the admin API reads of the running fleet."""

    def placement(self) -> Placement:
        """The current assignment: every assigned cluster's owner and spec."""
        ...

    @property
    def summaries(self) -> Summaries:
        """The owners' summaries."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """An HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


def _ours(placement: Placement, cluster: str, name: str) -> bool:
    """True while `cluster` is assigned as a cluster of topology `name` (a cluster that
    another registry declares now is no longer this topology's to stop)."""
    _, spec = placement.get(cluster, ("", None))
    return cluster in placement and (spec is None or (
        spec.origin is Origin.TOPOLOGY and spec.source == name))


def _stopped(placement: Placement, summaries: Mapping[str, Mapping[str, Summary]],
             cluster: str, name: str) -> bool:
    """True once `cluster` no longer runs as topology `name`'s: unassigned and reported by
    no owner (a stop takes a moment), or assigned from another registry now."""
    if _ours(placement, cluster, name):
        return False
    return cluster in placement or not any(cluster in s for s in summaries.values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TopologyService:
    """The operations behind `/v1/topologies`; see the module docstring."""

    def __init__(self, *, tables: Callable[[], RegistryTables], view: FleetView,
                 probe: Probe, deploy_timeout: float = DEPLOY_TIMEOUT,
                 verify_timeout: float = VERIFY_TIMEOUT) -> None:
        self._tables = tables
        self._view = view
        self._probe = probe
        self._deploy_timeout = deploy_timeout
        self._verify_timeout = verify_timeout
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- reads --------------------------------------------------------------------------

    async def _state(self, cluster_id: str, placement: Placement,
                     summaries: Mapping[str, Mapping[str, Summary]]) -> dict[str, Any]:
        owner, _ = placement.get(cluster_id, (None, None))
        summary = summaries.get(owner, {}).get(cluster_id) if owner else None
        return {"owner": owner,
                "state": summary.state if summary else ("assigned" if owner else "pending"),
                "last_full_sync": summary.last_full_sync if summary else None}

    async def _view_of(self, row: TopologyRow) -> dict[str, Any]:
        doc = orjson.loads(row.body or "{}")
        placement = self._view.placement()
        summaries = await self._view.summaries.read()
        clusters = [{**c, **await self._state(c["id"], placement, summaries)}
                    for c in public(doc)]
        return {"name": row.name, "version": row.version, "updated_at": row.updated_at,
                "clusters": clusters}

    async def list(self) -> Outcome:
        """Every stored topology, each cluster with its owner, state, last full sync."""
        rows = [r for r in await self._tables().topologies() if r.body is not None]
        return Outcome(200, {"topologies": [await self._view_of(r) for r in rows]})

    async def get(self, name: str) -> Outcome:
        """One stored topology; 404 if there is none of that name."""
        row = await self._tables().topology(name)
        if row is None or row.body is None:
            return Outcome(404, {"error": f"no topology {name!r}"})
        return Outcome(200, await self._view_of(row))

    # -- writes -------------------------------------------------------------------------

    async def put(self, name: str, body: bytes) -> Outcome:
        """Apply a topology document (see the module docstring)."""
        problems = check_name(name)
        doc: dict[str, Any] | None = None
        try:
            doc = parse(body)
        except Invalid as exc:
            problems += exc.problems
        if problems or doc is None:
            return Outcome(400, {"errors": problems})
        text = canonical(doc)
        sum_ = digest(text)
        async with self._locks[name]:
            for _ in range(WRITE_ATTEMPTS):
                tables = self._tables()
                row = await tables.topology(name)
                if row is not None and row.body is not None and row.digest == sum_:
                    view = await self._view_of(row)
                    return Outcome(200, {**view, "changed": False, "deployed": all(
                        c["state"] not in ("pending", "assigned") for c in view["clusters"])})
                taken = await self._taken(name, doc, tables)
                if taken:
                    return Outcome(409, {"errors": taken})
                failures = await self._verify(doc)
                if failures:
                    return Outcome(409, {"errors": failures})
                expected = row.version if row is not None else 0
                if not await tables.write_topology(name, text, sum_, expected):
                    continue  # another instance wrote it meanwhile: start over
                return await self._deploy(name, doc, row, expected + 1)
        return Outcome(409, {"errors": [f"topology {name!r} kept changing under concurrent"
                                        " writes; try again"]})

    async def delete(self, name: str) -> Outcome:
        """Remove a topology: its clusters stop, their rows as for a removed cluster."""
        async with self._locks[name]:
            for _ in range(WRITE_ATTEMPTS):
                tables = self._tables()
                row = await tables.topology(name)
                if row is None or row.body is None:
                    return Outcome(404, {"error": f"no topology {name!r}"})
                if await tables.write_topology(name, None, DELETED_DIGEST, row.version):
                    gone = [c["id"] for c in orjson.loads(row.body).get("clusters") or ()]
                    stopped = await self._wait_gone(name, gone)
                    placement = self._view.placement()
                    summaries = await self._view.summaries.read()
                    return Outcome(200, {"name": name, "deleted": True, "stopped": stopped,
                                         "clusters": [{"id": c, "state": "stopped" if _stopped(
                                             placement, summaries, c, name) else "stopping"}
                                             for c in gone]})
        return Outcome(409, {"errors": [f"topology {name!r} kept changing under concurrent"
                                        " writes; try again"]})

    async def _taken(self, name: str, doc: Mapping[str, Any],
                     tables: RegistryTables) -> list[str]:
        """Clusters of `doc` that another registry or topology declares."""
        wanted = {c["id"] for c in doc["clusters"]}
        claimed: dict[str, str] = {}
        for cluster, (_, spec) in sorted(self._view.placement().items()):
            if cluster in wanted and spec is not None and not (
                    spec.origin is Origin.TOPOLOGY and spec.source == name):
                where = f" ({spec.source})" if spec.source else ""
                claimed[cluster] = f"{spec.origin}{where}"
        for row in await tables.topologies():
            if row.name == name or row.body is None:
                continue
            for c in orjson.loads(row.body).get("clusters") or ():
                if c["id"] in wanted:
                    claimed.setdefault(c["id"], f"topology {row.name}")
        return [f"cluster {c}: already declared by {who}" for c, who in sorted(claimed.items())]

    async def _verify(self, doc: Mapping[str, Any]) -> list[str]:
        """Every participant's verification failure, in document order."""
        gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

        async def one(c: Mapping[str, Any]) -> str | None:
            endpoint = ClusterEndpoint(id=c["id"], server=c["server"], token=c.get("token"),
                                       insecure=bool(c.get("insecure_skip_tls_verify")))
            async with gate:
                try:
                    async with asyncio.timeout(self._verify_timeout + 2):
                        await self._probe(endpoint)
                except TimeoutError:
                    return (f"cluster {c['id']}: {c['server']} did not answer within"
                            f" {self._verify_timeout:g} s")
                except Exception as exc:  # every failure is the caller's to read
                    line = _first_line(exc).removeprefix(f"cluster {c['id']}: ")
                    return f"cluster {c['id']}: {line}"
            return None

        results = await asyncio.gather(*(one(c) for c in doc["clusters"]))
        return [r for r in results if r is not None]

    async def _wait(self, done: Callable[[Placement, Mapping[str, Mapping[str, Summary]]],
                                         bool | str]) -> bool:
        """Poll the assignment and summaries until `done` is True (or a failure message
        string) or the bound passes; True when done."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._deploy_timeout):
                while True:
                    result = done(self._view.placement(), await self._view.summaries.read())
                    if result is True:
                        return True
                    await asyncio.sleep(WATCH_EVERY)
        return False

    async def _wait_gone(self, name: str, gone: list[str]) -> bool:
        """Wait (bounded) until none of `gone` is assigned as this topology's."""
        return await self._wait(lambda placement, summaries: all(
            _stopped(placement, summaries, c, name) for c in gone))

    async def _deploy(self, name: str, doc: Mapping[str, Any], previous: TopologyRow | None,
                      version: int) -> Outcome:
        wanted = {s.id: s for s in specs_of(name, doc)}
        before = orjson.loads(previous.body) if previous and previous.body else {}
        gone = {c["id"] for c in before.get("clusters") or ()} - set(wanted)
        fatal: list[str] = []

        def deployed(placement: Placement,
                     summaries: Mapping[str, Mapping[str, Summary]]) -> bool:
            ok = all(_stopped(placement, summaries, c, name) for c in gone)
            for cluster, spec in wanted.items():
                owner, assigned = placement.get(cluster, (None, None))
                summary = summaries.get(owner, {}).get(cluster) if owner else None
                if assigned != spec or summary is None or not summary.reconciling:
                    ok = False
                if assigned == spec and summary is not None and summary.reason in FATAL_REASONS:
                    fatal.append(f"cluster {cluster}: {summary.reason}: {summary.message}")
                    return True
            return ok

        done = await self._wait(deployed)
        if fatal:
            restored = await self._tables().write_topology(
                name, previous.body if previous else None,
                previous.digest if previous and previous.body else DELETED_DIGEST, version)
            return Outcome(409, {"errors": fatal, "rolled_back": restored})
        row = await self._tables().topology(name)
        view = await self._view_of(row) if row is not None else {"name": name, "clusters": []}
        return Outcome(200, {**view, "changed": True, "deployed": done,
                             "removed": sorted(gone)})
