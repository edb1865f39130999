"""Master election on kazoo's Lock recipe, run in its own thread, bridged to asyncio.

Role: `Election.leaderships()` yields a `Leadership` each time this instance wins (and the
win is verified in the current session); the coordinator runs the master's work until the
leadership is lost, then calls `resign()`, and the thread contends again.

Why kazoo's Lock (the engine of kazoo's `Election`):
- **No herd.** Each contender creates an ephemeral sequential node and watches only its
  predecessor (`get(predecessor, watch)`), never the children of the election path, so
  when the leader dies exactly one contender wakes up and re-reads the list.
- **No orphan contenders on an ambiguous create.** Node names start with a per-contender
  UUID (`<uuid>__lock__<seq>`); when a create's reply is lost, the retry looks for a
  child with that prefix before creating again (the Curator trick), so a contender never
  leaves a second node behind that would later win an election nobody is running.

What kazoo does not do, and we do:
- kazoo's `Election.run()` keeps calling the leader function after the session is lost
  (the lock node is gone, another contender may already lead). A `Leadership` is bound to
  the session that created its node: the coordinator ends the master's work when the
  session generation changes, and every master write is a transaction that first checks
  the lock node (`check(node)`), so a deposed master cannot write even in the moment
  before it notices.
- The acquire blocks a thread for as long as we wait. It gets a dedicated daemon thread
  (the default executor has ~6 threads and 20 contenders would starve it); its retry
  back-off is capped at ~1 s instead of kazoo's 60 s, so it re-contends promptly after an
  outage.
- `wakeups` counts predecessor-watch notifications (the herd test reads it), including
  the NONE event kazoo fires at every watch when the connection drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import CancelledError as KazooCancelled
from kazoo.exceptions import ConnectionClosedError, KazooException
from kazoo.recipe.lock import Lock
from kazoo.retry import KazooRetry

from .latest import Latest
from .zk import EXPIRED, TRANSIENT, ZkSession, _post

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """The lock node this master stood on is gone (session lost or node deleted)."""


@dataclass(frozen=True, slots=True)
class Leadership:
    """A won election: the lock node (the fence for master writes) and its session."""

    node: str
    session_id: int
    generation: int


class _Contender(Lock):  # type: ignore[misc]  # kazoo ships no type hints
    """kazoo's Lock with a capped retry back-off and counted predecessor wake-ups."""

    def __init__(self, client: KazooClient, path: str, identifier: str, *,
                 max_delay: float, election: Election) -> None:
        super().__init__(client, path, identifier)
        self._retry = KazooRetry(
            max_tries=None, max_delay=max_delay, sleep_func=client.handler.sleep_func)
        self._election = election

    def _watch_predecessor(self, event: Any) -> None:
        self._election.wakeups += 1  # kazoo's callback thread is the only writer
        super()._watch_predecessor(event)


class Election:
    """One contender for `<root>/election`, for the lifetime of a coordinator."""

    def __init__(self, session: ZkSession, path: str, identifier: str) -> None:
        self._session = session
        self.path = path
        self.identifier = identifier
        self.wakeups = 0
        self._acquired: Latest[str | None] = Latest(None)  # lock node held by the thread
        self._guard = threading.Lock()
        self._held: str | None = None
        self._resign = threading.Event()
        self._stopping = threading.Event()
        self._contender: _Contender | None = None
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None

    @property
    def prefix(self) -> str:
        """This contender's node-name prefix (`<uuid>__lock__`), to find its own node."""
        if self._contender is None:
            raise RuntimeError("election not started")
        return str(self._contender.prefix)

    @property
    def started(self) -> bool:
        """True once `start` has been called."""
        return self._thread is not None

    def start(self) -> None:
        """Start contending in a dedicated thread; the election path must exist already.

        The caller creates the path (`ZkSession.ensure_path`), so the contender's first
        request is its create: nothing else of ours is in flight when a create goes
        ambiguous.
        """
        loop = self._session.loop
        self._done = loop.create_future()
        cap = max(0.2, min(1.0, self._session.session_timeout / 4))
        self._contender = _Contender(
            self._session.client, self.path, self.identifier, max_delay=cap, election=self)
        self._contender.assured_path = True
        self._thread = threading.Thread(
            target=self._run, name=f"election-{self.identifier}", daemon=True)
        self._thread.start()

    async def leaderships(self) -> AsyncIterator[Leadership]:
        """Yield each verified win: our lock node exists and belongs to the current session."""
        session = self._session
        async for node in self._acquired.stream():
            if node is None:
                continue
            while True:
                view = session.view.value
                try:
                    stat = await session.call(session.client.exists_async, node)
                    break
                except TRANSIENT:  # same session maybe: ask again once connected
                    await session.wait_connected()
                except EXPIRED:
                    stat = None
                    break
            if stat is None or stat.ephemeralOwner != view.session_id or not view.session_id:
                log.info("election node %s is not ours in this session; contending again", node)
                self.resign(node)
                continue
            yield Leadership(node, view.session_id, view.generation)

    def resign(self, node: str) -> None:
        """Give up the lock held on `node` (ignored if the thread has moved past it)."""
        with self._guard:
            if self._held == node:
                self._resign.set()

    async def stop(self, grace: float) -> None:
        """Stop contending: cancel a pending acquire or release a held lock; wait `grace` s."""
        self._stopping.set()
        self._resign.set()
        if self._contender is not None:
            self._contender.cancel()
        await self.wait_stopped(grace)

    async def wait_stopped(self, grace: float) -> bool:
        """Wait up to `grace` s for the thread to end; False if it is still blocked.

        A thread blocked on a request while disconnected ends when the session is closed.
        """
        if self._done is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.shield(self._done)
        return self._done.done()

    # -- the election thread ------------------------------------------------------------

    def _run(self) -> None:
        loop = self._session.loop
        lock = self._contender
        assert lock is not None
        try:
            while not self._stopping.is_set():
                try:
                    acquired = lock.acquire()
                except (KazooCancelled, ConnectionClosedError):
                    return
                except KazooException as exc:
                    log.warning("election: acquire failed, retrying: %r", exc)
                    if self._stopping.wait(0.5):  # a thread: an interruptible back-off
                        return
                    continue
                if not acquired:
                    continue
                self._hold(loop, f"{self.path}/{lock.node}", lock)
        except Exception:
            log.exception("election thread failed")
        finally:
            _post(loop, self._finished)

    def _hold(self, loop: asyncio.AbstractEventLoop, node: str, lock: _Contender) -> None:
        """Report the win, wait until told to resign, release (the node may be gone already)."""
        with self._guard:
            self._held = node
        _post(loop, self._acquired.set, node)
        self._resign.wait()
        with self._guard:
            self._held = None
            self._resign.clear()
        _post(loop, self._acquired.set, None)
        try:
            lock.release()
        except KazooException as exc:  # the node dies with its session anyway
            log.warning("election: release failed: %r", exc)

    def _finished(self) -> None:
        self._acquired.set(None)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
