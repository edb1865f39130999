"""Live members: one ephemeral znode per instance, and a watch over all of them.

Role: `register()` creates `<root>/members/<instance id>` (ephemeral, JSON
`{address, port, metric_port}`) in the current session; `watch()` yields every member's
id with its incarnation, re-armed after every change. The master assigns clusters to
exactly this set; /status lists it.

Why the node is named by the stable instance id, never by IP: an instance that restarts
or moves keeps its name, so the ring (and its clusters) stays where it was, and a
duplicate instance id shows up as a conflict instead of as two members.

Incarnation: the member node's czxid. A new session (or a restarted process with the
same id) gets a new node and so a new incarnation. The master records the incarnation of
each member it assigned to, and a cluster's epoch changes when its owner's incarnation
does, so a zombie from an earlier incarnation never holds the same fence as its successor.

Ambiguous create: if the create's reply is lost, the retry finds the node already there;
if its `ephemeralOwner` is our session it is ours. If another live session holds our id
(the previous incarnation, not yet expired, or a misconfigured twin), we wait for that
node to go (an exists watch) rather than steal it, and say so in one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping

from kazoo.exceptions import NodeExistsError, NoNodeError

from .api import Member
from .zk import RETRYABLE, ZkSession

log = logging.getLogger(__name__)


def encode_member(member: Member) -> bytes:
    """The member node's data."""
    return json.dumps(
        {"address": member.address, "port": member.port, "metric_port": member.metric_port},
        sort_keys=True,
    ).encode()


def decode_member(member_id: str, data: bytes | None) -> Member | None:
    """Parse a member node's data; None if it is not what we write."""
    try:
        raw = json.loads(data or b"")
        return Member(member_id, str(raw["address"]), int(raw["port"]), int(raw["metric_port"]))
    except (ValueError, KeyError, TypeError):
        return None


class Membership:
    """This instance's member node, and the watch over every member node."""

    def __init__(self, session: ZkSession, root: str, member: Member) -> None:
        self._session = session
        self.member = member
        self.path = f"{root}/members"
        self.node = f"{self.path}/{member.id}"

    async def register(self) -> int:
        """Create our member node in the current session; return its incarnation (czxid).

        Raises kazoo's connection or session errors; the caller retries in the next session.
        """
        session = self._session
        await session.ensure_path(self.path)
        warned = False
        while True:
            session_id = session.view.value.session_id
            try:
                _, stat = await session.call(
                    session.client.create_async, self.node, encode_member(self.member),
                    ephemeral=True, include_data=True,
                )
                log.info("registered as member %s", self.member.id)
                return int(stat.czxid)
            except NodeExistsError:
                pass
            fired = asyncio.Event()
            stat = await session.call(
                session.client.exists_async, self.node, watch=session.watcher(fired))
            if stat is None:
                continue
            if stat.ephemeralOwner == session_id:
                return int(stat.czxid)  # our own create, whose reply was lost
            if not warned:
                warned = True
                log.warning(
                    "member id %s is held by another session (0x%x): an earlier incarnation "
                    "whose session has not expired yet, or a second instance with this id; "
                    "waiting for it to go", self.member.id, stat.ephemeralOwner)
            await fired.wait()

    async def deregister(self) -> None:
        """Delete our member node if it is ours (best effort: closing the session also does)."""
        session = self._session
        with contextlib.suppress(NoNodeError, *RETRYABLE):
            stat = await session.call(session.client.exists_async, self.node)
            if stat is not None and stat.ephemeralOwner == session.view.value.session_id:
                await session.call(session.client.delete_async, self.node, stat.version)

    async def watch(self) -> AsyncIterator[Mapping[str, int]]:
        """Yield {member id: incarnation} now and after every change of the member set."""
        session = self._session
        last: dict[str, int] | None = None
        async for children in session.watch_children(self.path):
            members: dict[str, int] = {}
            for child in children:
                while True:
                    try:
                        stat = await session.call(
                            session.client.exists_async, f"{self.path}/{child}")
                        break
                    except RETRYABLE:
                        await session.wait_connected()
                if stat is not None:  # gone between the listing and this read: skip it
                    members[child] = int(stat.czxid)
            if members != last:
                last = members
                yield dict(members)
