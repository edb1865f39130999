"""The ZooKeeper session: kazoo's threads bridged to asyncio, and the stand-down timer.

Role: the one place that owns a `KazooClient`. It turns kazoo's connection states into an
async, level-triggered `SessionView` stream, runs kazoo requests as awaitables, and offers
watch loops that re-arm on every fire. `membership`, `election` and `assignment` build on
it; the coordinator reads `view` to decide whether this instance may own anything.

Threading model. kazoo runs a connection thread (state changes, listeners) and a callback
thread (watch callbacks, request completions). Neither may block, and neither may touch
asyncio objects. Every bridge here does one thing in kazoo's thread: hand the news to the
loop with `loop.call_soon_threadsafe`. Requests use kazoo's `*_async` methods and a
future settled from `rawlink`, so no executor thread waits on ZooKeeper.

States. kazoo reports CONNECTED, SUSPENDED (connection lost, session maybe alive) and LOST
(session expired or closed; its ephemeral nodes and watches are gone). A CONNECTED after
LOST is a new session: `generation` counts sessions, and whatever was tied to the old one
(member node, election node, leadership) must be redone.

Why our own watch loops instead of kazoo's `DataWatch`/`ChildrenWatch`: those block the
caller on their first read, call back on kazoo's thread, and retry with a back-off that
can reach 60 s after an outage. kazoo drops every low-level watch on SUSPENDED and LOST
(it fires them with a NONE event and does not re-send them), so `watch_data` and
`watch_children` re-read and re-arm after every fire, NONE included: a later change is
never missed (the Go original armed its assignment watch once), and the reads are
level-triggered (the current value, not a replay of events).

The stand-down timer ("session presumed dead"). The server expires a session
`session_timeout` (S) after it last heard from the client, and a new owner may start a
moment later. kazoo only reports SUSPENDED when a ping goes unanswered, up to 2/3·S
(+0.4 s jitter) after the last contact, so a timer started at SUSPENDED could outlive the
session. Instead the timer is anchored at the send time of the latest request that got a
reply (a heartbeat `exists("/")` every S/10 keeps that fresh): `live` turns False at
anchor + `stand_down`·S (default 2/3), before the server can expire the session, whether
kazoo has noticed the trouble yet or not. A reply in the same session makes it live again.

Handshake time-out. kazoo waits up to S / (number of hosts) for a connect handshake. With
one host, a handshake that hangs (ZooKeeper 3.8.0 leaves a client hanging when a server
still starting up closes its connection: ZOOKEEPER-5051; or a half-open TCP connection)
would cost the whole session. So the host list is repeated to at least three entries:
each attempt gets S/3, and the next one starts while the session can still be saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.protocol.states import KazooState, WatchedEvent, ZnodeStat
from kazoo.retry import KazooRetry

from .latest import Latest

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[Exception], ...] = (ConnectionLoss, OperationTimeoutError)
"""The request may not have run; retry once connected (same session)."""
EXPIRED: tuple[type[Exception], ...] = (SessionExpiredError,)
"""The session is gone; anything tied to it must be redone in the next one."""
RETRYABLE = TRANSIENT + EXPIRED


MIN_HOST_ENTRIES = 3
"""Repeat short host lists to this length, so one handshake may take at most S/3."""


def spread_hosts(hosts: str) -> str:
    """`hosts` with its entries repeated to at least `MIN_HOST_ENTRIES` (chroot kept)."""
    hosts = hosts.strip()
    chroot = ""
    if "/" in hosts:
        hosts, chroot = hosts.split("/", 1)
        chroot = "/" + chroot
    entries = [h.strip() for h in hosts.split(",") if h.strip()]
    if not entries or len(entries) >= MIN_HOST_ENTRIES:
        return hosts + chroot
    repeat = math.ceil(MIN_HOST_ENTRIES / len(entries))
    return ",".join(entries * repeat) + chroot


class SessionState(enum.StrEnum):
    """The session as this process sees it (also the `zk_session_state` label values)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class SessionView:
    """One observation of the session.

    `live`: the session may still be alive on the server, so this instance may act on
    it (own clusters, publish); False once the stand-down timer ran out or the session
    was lost. `generation` grows by one with every new session (0 before the first).
    """

    state: SessionState
    session_id: int | None = None
    generation: int = 0
    live: bool = False


class ZkSession:
    """A kazoo client owned by the asyncio loop: state stream, awaitable requests, watches."""

    def __init__(
        self,
        hosts: str,
        *,
        session_timeout: float,
        stand_down: float = 2 / 3,
        heartbeat: float | None = None,
    ) -> None:
        if not 0 < stand_down < 1:
            raise ValueError("stand_down is a fraction of the session timeout, in (0, 1)")
        self.hosts = hosts
        self.session_timeout = session_timeout
        self.stand_down_after = stand_down * session_timeout
        self.heartbeat_interval = heartbeat or session_timeout / 10
        self.view: Latest[SessionView] = Latest(SessionView(SessionState.CONNECTING))
        self._client: KazooClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._anchor = -math.inf  # loop time at which the server surely heard from us
        self._timer: asyncio.TimerHandle | None = None
        self._kick = asyncio.Event()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._disconnected_at = 0.0  # written and read in kazoo's connection thread only
        self._closed = False

    @property
    def client(self) -> KazooClient:
        """The kazoo client, for recipes (the election lock) that need it directly."""
        if self._client is None:
            raise RuntimeError("session not started")
        return self._client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this session reports to."""
        if self._loop is None:
            raise RuntimeError("session not started")
        return self._loop

    async def start(self) -> None:
        """Start connecting in the background; returns at once (kazoo retries forever)."""
        self._loop = asyncio.get_running_loop()
        cap = max(0.2, min(1.0, self.session_timeout / 4))
        self._client = KazooClient(
            hosts=spread_hosts(self.hosts),
            timeout=self.session_timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=cap),
            command_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=cap),
        )
        self._client.add_listener(self._on_kazoo_state)
        self._disconnected_at = self._loop.time()
        await asyncio.to_thread(self._client.start_async)
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="zk-heartbeat")

    async def close(self) -> None:
        """Close the session (the server drops its ephemeral nodes at once) and the client."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        client = self._client
        if client is not None:
            client.remove_listener(self._on_kazoo_state)
            await asyncio.to_thread(_stop_client, client)
        self.view.set(replace(self.view.value, state=SessionState.LOST, live=False))

    # -- kazoo thread -> loop -------------------------------------------------------------

    def _on_kazoo_state(self, state: KazooState) -> None:
        """kazoo's listener (connection thread): note the facts, hand them to the loop."""
        loop = self._loop
        if loop is None:
            return
        now = loop.time()  # time.monotonic(): safe to read from any thread
        session_id: int | None = None
        since = self._disconnected_at
        if state == KazooState.CONNECTED:
            client_id = self.client.client_id
            session_id = client_id[0] if client_id else None
        else:
            self._disconnected_at = now
        _post(loop, self._on_state, state, session_id, since)

    def _on_state(self, state: KazooState, session_id: int | None, since: float) -> None:
        if self._closed:
            return
        view = self.view.value
        if state == KazooState.CONNECTED:
            generation = view.generation + int(session_id != view.session_id)
            if generation != view.generation:
                log.info("ZooKeeper session 0x%x established", session_id or 0)
            else:
                log.info("ZooKeeper connection re-established, same session")
            # The handshake was sent after the disconnect we last noticed: the server heard
            # from us no earlier than that. The heartbeat refreshes the anchor at once.
            self._anchor = max(self._anchor, since)
            self._set(SessionView(SessionState.CONNECTED, session_id, generation, view.live))
            self._kick.set()
        elif state == KazooState.SUSPENDED:
            log.warning("ZooKeeper connection suspended; standing down in at most %.1fs "
                        "unless it comes back", max(0.0, self._deadline() - self.loop.time()))
            self._set(replace(view, state=SessionState.SUSPENDED))
        else:
            log.warning("ZooKeeper session lost; everything tied to it is gone")
            self._anchor = -math.inf
            self._set(replace(view, state=SessionState.LOST, live=False))

    # -- the stand-down timer ------------------------------------------------------------

    def _deadline(self) -> float:
        return self._anchor + self.stand_down_after

    def _touch(self, sent_at: float) -> None:
        """The server answered a request sent at `sent_at`: it heard from us then."""
        if sent_at > self._anchor and self.view.value.state is not SessionState.LOST:
            self._anchor = sent_at
        self._set(self.view.value)

    def _set(self, view: SessionView) -> None:
        """Publish `view` with `live` recomputed; keep one timer armed at the deadline."""
        now = self.loop.time()
        live = (
            not self._closed
            and view.state in (SessionState.CONNECTED, SessionState.SUSPENDED)
            and now < self._deadline()
        )
        if view.live and not live and view.state is not SessionState.LOST:
            log.warning("ZooKeeper session presumed dead (no reply for %.1fs): standing down",
                        now - self._anchor)
        if live and self._timer is None:
            self._timer = self.loop.call_at(self._deadline(), self._on_timer)
        self.view.set(replace(view, live=live))

    def _on_timer(self) -> None:
        self._timer = None
        self._set(self.view.value)

    async def _heartbeat(self) -> None:
        """Keep the stand-down anchor fresh with a cheap request every S/10."""
        while True:
            try:
                await self.wait_connected()
                await self.call(self.client.exists_async, "/")
            except RETRYABLE:
                pass
            except ConnectionClosedError:
                return
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_interval):
                    await self._kick.wait()

    # -- requests -------------------------------------------------------------------------

    async def wait_connected(self) -> SessionView:
        """Wait until kazoo is connected and the loop has heard so; return the view."""
        while not (self.view.value.state is SessionState.CONNECTED and self.client.connected):
            if self._closed:
                raise ConnectionClosedError("session closed")
            await self.view.wait_newer(self.view.version)
        return self.view.value

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a kazoo `*_async` method (or `commit_async`) and await its result.

        A reply also moves the stand-down anchor to the time the request was sent.
        """
        loop = self.loop
        future: asyncio.Future[Any] = loop.create_future()
        sent_at = loop.time()

        def settle(result: Any) -> None:
            if future.done():
                return
            if result.successful():
                future.set_result(result.value)
            else:
                future.set_exception(result.exception)

        method(*args, **kwargs).rawlink(lambda result: _post(loop, settle, result))
        value = await future
        self._touch(sent_at)
        return value

    def watcher(self, fired: asyncio.Event) -> Callable[[WatchedEvent], None]:
        """A kazoo watch callback that sets `fired` on the loop (any event, NONE included)."""
        loop = self.loop
        return lambda event: _post(loop, fired.set)

    async def watch_data(self, path: str) -> AsyncIterator[tuple[bytes | None, ZnodeStat | None]]:
        """Yield (data, stat) now and after every change; (None, None) while it is missing.

        Survives reconnects and new sessions: every fire re-reads and re-arms.
        """
        last: object = object()
        while True:
            fired = asyncio.Event()
            try:
                # `exists` arms a watch whether or not the node is there (create, delete and
                # set all fire it); the data is then read without a second watch.
                stat = await self.call(self.client.exists_async, path, watch=self.watcher(fired))
                data: bytes | None = None
                if stat is not None:
                    try:
                        data, stat = await self.call(self.client.get_async, path)
                    except NoNodeError:
                        stat = None
            except RETRYABLE:
                await self.wait_connected()
                continue
            key = stat.mzxid if stat is not None else None
            if key != last:
                last = key
                yield data, stat
            await fired.wait()

    async def watch_children(self, path: str) -> AsyncIterator[list[str]]:
        """Yield the sorted children of `path` now and after every fire (re-armed each time).

        Not deduplicated: a child deleted and re-created between two reads leaves the list
        unchanged, and the caller may still need to look (membership reads incarnations).
        """
        while True:
            fired = asyncio.Event()
            try:
                children = await self.call(
                    self.client.get_children_async, path, watch=self.watcher(fired))
            except NoNodeError:
                await self.ensure_path(path)
                continue
            except RETRYABLE:
                await self.wait_connected()
                continue
            yield sorted(children)
            await fired.wait()

    async def ensure_path(self, path: str) -> None:
        """Create `path` and its parents if missing, retrying across disconnects."""
        while True:
            try:
                await self.call(self.client.ensure_path_async, path)
                return
            except RETRYABLE:
                await self.wait_connected()


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """Hand a call to the loop from a kazoo thread; drop it if the loop is already closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _stop_client(client: KazooClient) -> None:
    """Blocking part of `close` (runs in a worker thread): close the session, free sockets."""
    try:
        client.stop()
    except Exception as exc:  # a dead connection must not stop our shutdown
        log.warning("closing the ZooKeeper session failed: %s", exc)
    with contextlib.suppress(Exception):
        client.close()
