"""`ZooKeeperCoordinator`: membership, election, assignment and stand-down, put together.

Role: the `Coordinator` for N replicas. Inputs: the ZooKeeper ensemble, the cluster
registries, this instance's `Member` record. Output: `owned()`, the level-triggered set of
clusters this instance must run now, each with its `Fence`; `status()` for /status.

What runs, as tasks of one group (each restarted with a pause if it fails):
- session follower: every `SessionView` change (connected, suspended, stand-down timer,
  lost) recomputes ownership; stood down or lost means own nothing.
- registrar: in every new session, create our member node (a LOST session took it away).
- member watch and assignment watch (both re-armed on every fire, across sessions).
- election: while this instance is master (a verified win, in the current session), the
  master loop merges the registries (every `pull_interval`), assigns clusters to the live
  members, and publishes when the result differs; it also re-runs on every change of the
  member set and of the assignment znode (so a stray edit is repaired).

Ownership = this incarnation's share of the current assignment, but only while the
session is live (connected, or suspended and not yet past the stand-down timer) and our
member node exists in it. The controller should stop reconcilers on an empty set at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from kazoo.exceptions import ConnectionClosedError

from reconciler import ClusterId, Metrics
from synchronizer.registries import Registry, RegistryPull

from .api import Assigned, CoordinationStatus, Member, moved_registry
from .assignment import Assignment, Decision, Publisher
from .election import Election, Leadership, LeadershipLost
from .hashring import DEFAULT_LOAD_FACTOR, DEFAULT_VNODES, assign
from .latest import Latest
from .membership import Membership
from .zk import RETRYABLE, TRANSIENT, SessionState, SessionView, ZkSession

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
"""Pause before restarting a coordination task that failed unexpectedly."""


class ZooKeeperCoordinator:
    """Coordinates N instances through ZooKeeper; see the module docstring."""

    def __init__(
        self,
        instance_id: str,
        member: Member,
        hosts: str,
        root: str,
        session_timeout: float,
        registries: Sequence[Registry],
        pull_interval: float,
        metrics: Metrics | None = None,
        *,
        stand_down: float = 2 / 3,
        vnodes: int = DEFAULT_VNODES,
        load_factor: float | None = DEFAULT_LOAD_FACTOR,
    ) -> None:
        if member.id != instance_id:
            raise ValueError(f"member.id {member.id!r} must be the instance id {instance_id!r}")
        self.instance_id = instance_id
        self.root = "/" + root.strip("/")
        self._timeout = session_timeout
        self._pull_interval = pull_interval
        self._metrics = metrics
        self._vnodes = vnodes
        self._load_factor = load_factor
        self._session = ZkSession(hosts, session_timeout=session_timeout, stand_down=stand_down)
        self._membership = Membership(self._session, self.root, member)
        self._election = Election(self._session, f"{self.root}/election", instance_id)
        self._publisher = Publisher(self._session, f"{self.root}/assignment")
        self.pull = RegistryPull(registries)
        self._owned: Latest[Mapping[ClusterId, Assigned]] = Latest(MappingProxyType({}))
        self._members: Latest[Mapping[str, int]] = Latest(MappingProxyType({}))
        self._doc: Latest[Assignment] = Latest(Assignment())
        self._members_seen = False
        self._doc_seen = False
        self._registered: tuple[int, int] | None = None  # (session generation, incarnation)
        self._leading: Leadership | None = None
        self._published: Assignment | None = None
        self._moved_last = 0
        self._master_flag: Latest[bool] = Latest(False)
        self._ready = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- the Coordinator interface ---------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Joined: registered in a live session and the assignment has been read."""
        return self._ready

    @property
    def session(self) -> ZkSession:
        """The ZooKeeper session (for diagnostics and tests)."""
        return self._session

    @property
    def election(self) -> Election:
        """This instance's election contender (for diagnostics and tests)."""
        return self._election

    async def start(self) -> None:
        """Connect in the background and start every coordination task."""
        if self._task is not None or self._stopping:
            return
        self._gauge_session(self._session.view.value)
        self._gauge("is_master", 0)
        await self._session.start()
        self._task = asyncio.create_task(self._run(), name=f"coordinator-{self.instance_id}")

    async def stop(self) -> None:
        """Stand down, resign, delete our member node, close the session."""
        if self._stopping:
            return
        self._stopping = True
        self._recompute()
        if self._task is None:
            return  # never started: nothing to give up
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._leading = None
        self._master_flag.set(False)
        self._gauge("is_master", 0)
        # Connected: resign and deregister explicitly (a successor is elected and the
        # members' watches fire at once). Not connected: nothing can be deleted now, and
        # closing the session (or its expiry) removes our nodes anyway - don't wait.
        grace = self._timeout if self._session.client.connected else 0.0
        await self._election.stop(grace=grace)
        if grace:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(grace):
                    await self._membership.deregister()
        await self._session.close()
        await self._election.wait_stopped(self._timeout)
        self._gauge_session(self._session.view.value)
        log.info("coordination stopped")

    def owned(self) -> AsyncIterator[Mapping[ClusterId, Assigned]]:
        """The full owned set now and after every change (newest value only)."""
        return self._owned.stream()

    def leadership(self) -> AsyncIterator[bool]:
        """True while this instance is master, now and after every change (the master's
        duties - the SyncCluster operator, status, removals - follow it)."""
        return self._master_flag.stream()

    @property
    def assignment(self) -> Assignment:
        """The latest assignment read from ZooKeeper (owners and specs of every cluster)."""
        return self._doc.value

    def status(self) -> CoordinationStatus:
        """A snapshot for /status."""
        view = self._session.view.value
        state = view.state.value
        if view.state is SessionState.CONNECTED and not view.live and not self._stopping:
            state = SessionState.SUSPENDED.value  # connected, but no reply for too long
        doc = self._doc.value
        leading = self._leading is not None
        published = self._published or doc
        return CoordinationStatus(
            state=state,
            master=leading,
            master_id=self.instance_id if leading else doc.master,
            members=tuple(sorted(self._members.value)),
            assignments=dict(published.owners) if leading else None,
            assignment_version=doc.version if self._doc_seen else None,
            moved_last=self._moved_last if leading else 0,
        )

    # -- tasks -------------------------------------------------------------------------------

    async def _run(self) -> None:
        tasks: dict[str, Callable[[], Awaitable[None]]] = {
            "session": self._follow_session,
            "registrar": self._register_loop,
            "members": self._watch_members,
            "assignment": self._watch_assignment,
            "election": self._lead,
        }
        async with asyncio.TaskGroup() as group:
            for name, fn in tasks.items():
                group.create_task(self._supervised(name, fn), name=f"{self.instance_id}-{name}")

    async def _supervised(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await fn()
                return
            except ConnectionClosedError:
                return
            except Exception:
                log.exception("coordination task %s failed; restarting it", name)
                await asyncio.sleep(RESTART_PAUSE)

    async def _follow_session(self) -> None:
        async for view in self._session.view.stream():
            self._gauge_session(view)
            self._recompute()

    async def _register_loop(self) -> None:
        session = self._session

        def needs_registration(view: SessionView) -> bool:
            registered = self._registered
            return view.state is SessionState.CONNECTED and (
                registered is None or registered[0] != view.generation)

        while True:
            view = await session.view.wait_for(needs_registration)
            try:
                incarnation = await self._membership.register()
            except RETRYABLE:
                await session.wait_connected()
                continue
            if session.view.value.generation == view.generation:
                self._registered = (view.generation, incarnation)
                self._recompute()

    async def _watch_members(self) -> None:
        async for members in self._membership.watch():
            self._members_seen = True
            self._members.set(MappingProxyType(dict(members)))

    async def _watch_assignment(self) -> None:
        async for data, _stat in self._session.watch_data(self._publisher.path):
            self._doc_seen = True
            self._doc.set(Assignment.decode(data))
            self._recompute()

    async def _lead(self) -> None:
        if not self._election.started:
            await self._session.ensure_path(self._election.path)
            self._election.start()
        async for lead in self._election.leaderships():
            try:
                await self._master(lead)
            except* LeadershipLost as group:
                log.warning("no longer master: %s", group.exceptions[0])
            finally:
                self._leading = None
                self._master_flag.set(False)
                self._gauge("is_master", 0)
                self._election.resign(lead.node)

    # -- the master ------------------------------------------------------------------------

    async def _master(self, lead: Leadership) -> None:
        log.info("elected master (session generation %d)", lead.generation)
        self._leading = lead
        self._published = None
        self._master_flag.set(True)
        self._gauge("is_master", 1)
        kick = asyncio.Event()
        pulled = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._depose_on_new_session(lead))
            group.create_task(self._kick_on(self._members, kick))
            group.create_task(self._kick_on(self._doc, kick))
            group.create_task(self._pull_loop(kick, pulled))
            group.create_task(self._rebalance_loop(lead, kick, pulled))

    async def _depose_on_new_session(self, lead: Leadership) -> None:
        await self._session.view.wait_for(
            lambda v: v.generation != lead.generation or v.state is SessionState.LOST)
        raise LeadershipLost("the session the election was won in is gone")

    @staticmethod
    async def _kick_on(latest: Latest[Any], kick: asyncio.Event) -> None:
        async for _ in latest.stream():
            kick.set()

    async def _pull_loop(self, kick: asyncio.Event, pulled: asyncio.Event) -> None:
        while True:
            await self.pull.pull()
            pulled.set()
            kick.set()
            await self.pull.sleep(self._pull_interval)  # the period, or less on a kick

    async def _rebalance_loop(
        self, lead: Leadership, kick: asyncio.Event, pulled: asyncio.Event
    ) -> None:
        await pulled.wait()  # never publish before the registries have been read
        while True:
            await kick.wait()
            kick.clear()
            if not self._members_seen or not self._members.value:
                continue  # never publish "nobody owns anything" from an unread member list
            try:
                result = await self._publisher.publish(
                    lead, self._decide, master=self.instance_id)
            except TRANSIENT:
                await self._session.wait_connected()
                kick.set()
                continue
            self._published = result.assignment
            if result.moved is None:
                continue
            self._moved_last = result.moved
            if self._metrics is not None:
                self._metrics.inc("rebalances_total", {})
                self._metrics.inc("moved_clusters_total", {}, result.moved)
            log.info("published assignment v%d: %d clusters on %d members, %d moved",
                     result.assignment.version, len(result.assignment.owners),
                     len(result.assignment.members), result.moved)

    def _decide(self, current: Assignment) -> Decision:
        members = dict(self._members.value)
        merged = self.pull.merged()
        specs: dict[str, Any] = {c: s.to_json() for c, s in merged.items()}
        if not self.pull.complete:
            # a registry never answered: drop nothing, keep what the assignment says
            for cluster in current.owners:
                held = cluster in self.pull.declared  # declared, but must not run now
                if cluster not in specs and cluster in current.specs and not held:
                    specs[cluster] = dict(current.specs[cluster])
            clusters = set(specs) | set(current.owners)
        else:
            clusters = set(specs)
        owners = assign(clusters, members, vnodes=self._vnodes, load_factor=self._load_factor)
        return owners, members, specs

    # -- ownership and metrics -------------------------------------------------------------

    def _recompute(self) -> None:
        view = self._session.view.value
        registered = self._registered
        joined = (
            not self._stopping
            and view.live
            and registered is not None
            and registered[0] == view.generation
        )
        share: dict[ClusterId, Assigned] = {}
        if joined and registered is not None:
            share = self._doc.value.share(self.instance_id, registered[1])
        self._ready = joined and self._doc_seen
        moved = moved_registry(self._owned.value, share)  # equal, but must reach the controller
        if self._owned.set(MappingProxyType(share), force=moved):
            log.info("owning %d clusters", len(share))
            self._gauge("assigned_clusters", len(share))

    def _gauge(self, name: str, value: float) -> None:
        if self._metrics is not None:
            self._metrics.set(name, {}, value)

    def _gauge_session(self, view: SessionView) -> None:
        if self._metrics is None:
            return
        for state in SessionState:
            self._metrics.set("zk_session_state", {"state": state.value},
                              1 if state is view.state else 0)
