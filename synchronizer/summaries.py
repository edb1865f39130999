"""What each owner says about its clusters, readable by every instance.

Why: the master writes each SyncCluster's status (owner, state, last full sync, pods, a
`Ready` condition with a reason), and any instance answers `GET /v1/topologies` with each
cluster's owner and state, but only the owner knows how its cluster is doing. So every
instance publishes a small summary per owned cluster; the owner of a cluster comes from
the assignment, its summary from the owner. Published, not polled: each member writes
one ephemeral znode `<root>/summaries/<instance id>` (a few hundred bytes per cluster), on
a change of any cluster's state or reason at once and of counts at most every
`COUNT_EVERY` seconds; readers read the children. Reading members' /status over HTTP
instead would need an address every member can reach (the bind address is usually
0.0.0.0) and would move the whole /status document for a few fields. Standalone mode has
one instance: its summaries are computed on the spot. Nothing here holds a secret: a
message is an error line of the kind /status already shows.

The reason names what a `Ready` condition says (docs/operations.md, "Register clusters"):
`Synced`, `Syncing` (first full sync running), `Starting` (waiting for the lease, opening),
`SecretNotFound` (a credential reference cannot be resolved), `InvalidCredentials` (an
unusable kubeconfig), `Unauthorized` (every kind refused: 401/403), `KindRefused` (some
kinds refused), `Unreachable` (the API server does not answer), `CmdbUnavailable`,
`Failing` (anything else).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from reconciler import ClusterSupervisor, Phase

from .status import cluster_state, last_full_sync

log = logging.getLogger(__name__)

TICK = 1.0
"""Seconds between two looks at the owned clusters by the publisher."""
COUNT_EVERY = 10.0
"""Seconds between two publications that change only counts or sync times."""
REFRESH_EVERY = 60.0
"""Seconds after which an unchanged summary is written again (a znode of an earlier session
may have vanished with it)."""
RUNNING_STATES = frozenset({"syncing", "watching", "degraded"})
"""Cluster states of a cluster that is being reconciled (its lease held, kinds running)."""


@dataclass(frozen=True, slots=True)
class Summary:
    """One owned cluster as its owner sees it."""

    state: str
    reason: str
    message: str = ""
    last_full_sync: str | None = None
    pods: int = 0

    @property
    def reconciling(self) -> bool:
        """True when the owner holds the lease and the kinds run."""
        return self.state in RUNNING_STATES

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Summary:
        """The inverse of `to_json` (unknown keys ignored)."""
        return cls(state=str(doc.get("state", "")), reason=str(doc.get("reason", "")),
                   message=str(doc.get("message") or ""),
                   last_full_sync=doc.get("last_full_sync"), pods=int(doc.get("pods") or 0))

    def same_state(self, other: Summary | None) -> bool:
        """Equal but for counts and times (a change worth publishing at once otherwise)."""
        return other is not None and (self.state, self.reason, self.message) == (
            other.state, other.reason, other.message)


def _reason(state: str, supervisor: ClusterSupervisor | None, error: str | None
            ) -> tuple[str, str]:
    if supervisor is None:
        if not error:
            return "Starting", ""
        if error.startswith("SecretError"):
            return "SecretNotFound", error.removeprefix("SecretError: ")
        if error.startswith("KubeConfigError"):
            return "InvalidCredentials", error.removeprefix("KubeConfigError: ")
        return "Failing", error
    recs = list(supervisor.reconcilers.values())
    errors = [r.status.last_error for r in recs if r.status.last_error]
    message = errors[0] if errors else (supervisor.status.last_error or "")
    if state == "watching":
        return "Synced", ""
    if state == "syncing":
        return "Syncing", ""
    if state != "degraded":
        return ("Starting", message) if state in ("starting", "waiting-lease") \
            else ("Failing", message)
    refused = [r for r in recs if r.status.phase is Phase.REFUSED]
    if refused and len(refused) == len(recs) and any(
            "HTTP 401" in (r.status.last_error or "") or "HTTP 403" in (r.status.last_error or "")
            for r in refused):
        return "Unauthorized", message
    backing = [r.status.last_error or "" for r in recs if r.status.phase is Phase.BACKOFF]
    if any("CMDB" in e for e in backing):
        return "CmdbUnavailable", next(e for e in backing if "CMDB" in e)
    if backing:
        return "Unreachable", backing[0]
    if refused:
        return "KindRefused", refused[0].status.last_error or ""
    return "Failing", message


NAMES_SERVER = frozenset({"Unreachable", "Unauthorized", "KindRefused"})
"""Reasons whose message starts with where the cluster is reached (the error may not)."""


def summarize(supervisor: ClusterSupervisor | None, error: str | None, pods: int,
              where: str = "") -> Summary:
    """The summary of one running cluster (the controller's view of it); `where` is how it
    is reached (`ClusterSpec.where`: a URL, never a secret)."""
    state = cluster_state(supervisor, error)
    reason, message = _reason(state, supervisor, error)
    if reason in NAMES_SERVER and where and where not in message:
        message = f"{where}: {message}"
    synced = last_full_sync(supervisor)
    return Summary(state=state, reason=reason, message=message[:300],
                   last_full_sync=synced.isoformat() if synced else None, pods=pods)


Compute = Callable[[], Awaitable[dict[str, Summary]]]
"""This instance's summaries now, by cluster id."""


class Summaries(Protocol):
    """Every instance's summaries: instance id → cluster id → summary."""

    async def read(self) -> dict[str, dict[str, Summary]]:
        """The latest published summaries (an instance that published none is absent)."""
        ...

    async def run(self) -> None:
        """Publish this instance's summaries until cancelled (nothing to do standalone)."""
        ...


class LocalSummaries:
    """Standalone: the one instance's summaries, computed when asked."""

    def __init__(self, instance_id: str, compute: Compute) -> None:
        self._id = instance_id
        self._compute = compute

    async def read(self) -> dict[str, dict[str, Summary]]:
        """{this instance: its summaries}."""
        return {self._id: await self._compute()}

    async def run(self) -> None:
        """Nothing is published in standalone mode."""
        await asyncio.Event().wait()


def encode(summaries: Mapping[str, Summary]) -> bytes:
    """A summaries znode's data."""
    return orjson.dumps({c: s.to_json() for c, s in sorted(summaries.items())})


def decode(data: bytes | None) -> dict[str, Summary]:
    """Parse a summaries znode; empty when unreadable (logged)."""
    if not data:
        return {}
    try:
        raw = orjson.loads(data)
        return {str(c): Summary.from_json(s) for c, s in raw.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        log.warning("unreadable cluster summaries, ignored: %s", exc)
        return {}


class ZkSummaries:
    """Summaries in ZooKeeper: `<root>/summaries/<instance id>`, ephemeral, JSON."""

    def __init__(self, session: Any, root: str, instance_id: str, compute: Compute) -> None:
        self._session = session
        self.path = f"{root.rstrip('/')}/summaries"
        self._node = f"{self.path}/{instance_id}"
        self._compute = compute
        self._cache: dict[str, dict[str, Summary]] = {}

    async def read(self) -> dict[str, dict[str, Summary]]:
        """Every member's summaries; the last good read while ZooKeeper does not answer."""
        from synchronizer.coordination.zk import RETRYABLE

        session = self._session
        client = session.client
        try:
            children = await session.call(client.get_children_async, self.path)
            out: dict[str, dict[str, Summary]] = {}
            for child in children:
                with contextlib.suppress(Exception):
                    data, _ = await session.call(client.get_async, f"{self.path}/{child}")
                    out[child] = decode(data)
        except RETRYABLE:
            return dict(self._cache)
        except Exception:  # the path does not exist yet: nobody published
            return {}
        self._cache = out
        return out

    async def run(self) -> None:
        """Publish on change (see the module), until cancelled."""
        loop = asyncio.get_running_loop()
        last: dict[str, Summary] | None = None
        written_at = float("-inf")
        while True:
            current = await self._compute()
            now = loop.time()
            urgent = last is None or set(current) != set(last) or any(
                not s.same_state(last.get(c)) for c, s in current.items())
            due = current != last and now - written_at >= COUNT_EVERY
            if urgent or due or now - written_at >= REFRESH_EVERY:
                with contextlib.suppress(Exception):  # retried on the next tick
                    await self._write(encode(current))
                    last, written_at = current, now
            await asyncio.sleep(TICK)

    async def _write(self, data: bytes) -> None:
        from kazoo.exceptions import NodeExistsError, NoNodeError

        session = self._session
        client = session.client
        try:
            await session.call(client.set_async, self._node, data)
        except NoNodeError:
            await session.ensure_path(self.path)
            with contextlib.suppress(NodeExistsError):
                await session.call(client.create_async, self._node, data, ephemeral=True)
