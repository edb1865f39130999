"""The published assignment: one versioned znode, written by the master, read by everyone.

Role: the master computes {cluster: member} (`hashring.assign`) and `Publisher.publish`
writes it to `<root>/assignment` as JSON when it differs from what is there; every member
watches that znode (`ZkSession.watch_data`, re-armed on every fire) and takes its share
(`Assignment.share`) as {cluster: Fence}.

Document: `{"version": n, "master": id, "members": {id: incarnation},
"assignments": {cluster: id}, "epochs": {cluster: epoch}, "specs": {cluster: spec}}`; a
spec names its secrets by reference only (`registries.spec`). One znode, so a member always
sees a consistent whole (never half of a rebalance), and a set with the expected znode
version makes two writers impossible to interleave.

Epochs (the fencing tokens of the store's per-cluster lease). A cluster keeps its epoch
while its owner (id and incarnation) stays the same. When it gets a new owner, or its
owner a new incarnation, its epoch becomes the `mzxid` of the assignment znode as read
just before this write (the zxid of the previous publish). zxids only grow, and every
earlier publish's epochs are at most the zxid of the write before it, so a new owner's
epoch is strictly higher than every epoch any earlier owner of that cluster ever held -
across master fail-overs, and even if the znode is deleted and re-created (the create
gets a newer zxid). Epochs are 64-bit (a zxid is epoch<<32 | counter): store them BIGINT.
Standalone mode uses epoch 0.

Release-before-acquire: we rely on the fence, not on a hand-over protocol. The old owner
stops when it reads the new assignment (or stands down on its local timer); the new owner
may start before that, but takes the store's lease with a higher epoch, after which the
old owner's writes are rejected (`Fenced`) and the merge rule rejects stale rows anyway.
A hand-over that waited for the old owner would need its acknowledgement and would stall
on exactly the owners that are in trouble (partitioned, paused), which the fence covers.

A deposed master cannot publish: the write is a transaction that first checks the
master's election node, which vanished with its session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from reconciler import ClusterId, Fence
from synchronizer.registries.spec import ClusterSpec

from .api import Assigned
from .election import Leadership, LeadershipLost
from .hashring import moved
from .zk import EXPIRED, ZkSession

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
Decision = tuple[Mapping[str, str], Mapping[str, int], Mapping[str, Mapping[str, Any]]]
"""What the master decides: owners by cluster, members by incarnation, specs by cluster."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """One version of the published assignment."""

    version: int = 0
    master: str | None = None
    members: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    owners: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    epochs: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    specs: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    """Each assigned cluster's `ClusterSpec.to_json()` (secrets by reference only)."""

    def encode(self) -> bytes:
        """The znode's data: canonical JSON (sorted keys)."""
        return json.dumps(
            {
                "version": self.version,
                "master": self.master,
                "members": dict(self.members),
                "assignments": dict(self.owners),
                "epochs": dict(self.epochs),
                "specs": {k: dict(v) for k, v in self.specs.items()},
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> Assignment:
        """Parse the znode's data; empty for a missing or unreadable node (logged)."""
        if not data:
            return cls()
        try:
            raw = json.loads(data)
            return cls(
                version=int(raw.get("version", 0)),
                master=raw.get("master"),
                members={str(k): int(v) for k, v in raw.get("members", {}).items()},
                owners={str(k): str(v) for k, v in raw.get("assignments", {}).items()},
                epochs={str(k): int(v) for k, v in raw.get("epochs", {}).items()},
                specs={str(k): dict(v) for k, v in (raw.get("specs") or {}).items()},
            )
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("unreadable assignment znode, treating it as empty: %s", exc)
            return cls()

    def share(self, member_id: str, incarnation: int | None) -> dict[ClusterId, Assigned]:
        """The clusters assigned to this member's incarnation, each with fence and spec.

        An incarnation the master has not assigned to yet (we re-registered after losing
        the session) gets nothing until the master publishes for it.
        """
        if incarnation is None or self.members.get(member_id) != incarnation:
            return {}
        out: dict[ClusterId, Assigned] = {}
        for cluster, owner in self.owners.items():
            if owner != member_id:
                continue
            spec = self.specs.get(cluster)
            try:
                parsed = ClusterSpec.from_json(spec) if spec else None
            except (KeyError, TypeError, ValueError) as exc:
                log.error("cluster %s: unreadable spec in the assignment: %s", cluster, exc)
                parsed = None
            out[ClusterId(cluster)] = Assigned(
                Fence(owner=member_id, epoch=self.epochs.get(cluster, 0)), parsed)
        return out

    def same_plan(self, other: Assignment) -> bool:
        """Equal in everything but the version: nothing to publish."""
        return (
            self.master == other.master
            and dict(self.members) == dict(other.members)
            and dict(self.owners) == dict(other.owners)
            and dict(self.epochs) == dict(other.epochs)
            and {k: dict(v) for k, v in self.specs.items()}
            == {k: dict(v) for k, v in other.specs.items()}
        )


def plan(
    current: Assignment,
    owners: Mapping[str, str],
    members: Mapping[str, int],
    *,
    master: str,
    epoch: int,
    specs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Assignment:
    """The next assignment: `owners`, with epochs kept where owner and incarnation are."""
    epochs: dict[str, int] = {}
    for cluster, owner in owners.items():
        unchanged = (
            current.owners.get(cluster) == owner
            and current.members.get(owner) == members.get(owner)
            and cluster in current.epochs
        )
        epochs[cluster] = current.epochs[cluster] if unchanged else epoch
    return Assignment(
        version=current.version + 1,
        master=master,
        members=dict(members),
        owners=dict(owners),
        epochs=epochs,
        specs={k: v for k, v in (specs or {}).items() if k in owners},
    )


@dataclass(frozen=True, slots=True)
class Published:
    """What a publish attempt left in ZooKeeper: the assignment, and how many clusters moved."""

    assignment: Assignment
    moved: int | None  # None: nothing changed, nothing written


class Publisher:
    """The master's writer of `<root>/assignment`."""

    def __init__(self, session: ZkSession, path: str) -> None:
        self._session = session
        self.path = path

    async def publish(
        self,
        leadership: Leadership,
        decide: Callable[[Assignment], Decision],
        *,
        master: str,
    ) -> Published:
        """Read the current assignment, let `decide` compute owners and members, write if new.

        Raises `LeadershipLost` when the election node is gone, and kazoo's connection
        errors (the caller retries once connected).
        """
        session = self._session
        client = session.client
        while True:
            try:
                data, stat = await session.call(client.get_async, self.path)
            except NoNodeError:
                try:
                    await session.call(
                        client.create_async, self.path, Assignment().encode(), makepath=True)
                except NodeExistsError:
                    pass
                continue
            except EXPIRED as exc:
                raise LeadershipLost("session expired") from exc
            current = Assignment.decode(data)
            owners, members, specs = decide(current)
            new = plan(current, owners, members, master=master, epoch=int(stat.mzxid),
                       specs=specs)
            if new.same_plan(current):
                return Published(current, None)
            txn = client.transaction()
            txn.check(leadership.node, 0)
            txn.set_data(self.path, new.encode(), stat.version)
            try:
                results = await session.call(txn.commit_async)
            except EXPIRED as exc:
                raise LeadershipLost("session expired") from exc
            if isinstance(results[0], Exception):
                raise LeadershipLost(f"election node {leadership.node}: {results[0]!r}")
            if isinstance(results[1], (BadVersionError, NoNodeError)):
                continue  # written or deleted meanwhile (maybe by us, reply lost): read again
            if isinstance(results[1], Exception):
                raise results[1]
            return Published(new, moved(dict(current.owners), dict(new.owners)))
