"""Helpers shared by the coordination tests (tests/coordination is on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

GUARD = 30.0
"""Upper bound on any single wait in this suite: a hang fails the test, it never times it."""


async def guard(awaitable: Awaitable[Any], seconds: float = GUARD) -> Any:
    """Await with a generous upper bound, so a bug fails instead of hanging."""
    async with asyncio.timeout(seconds):
        return await awaitable


class Changes:
    """Wakes a test whenever any of several async streams yields; holds their latest values."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.history: dict[str, list[Any]] = {}
        self.log: list[tuple[str, Any]] = []  # every value of every stream, in arrival order
        self.errors: list[tuple[str, BaseException]] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def follow(self, name: str, stream: AsyncIterator[Any]) -> None:
        """Consume `stream` in the background, recording each value under `name`."""

        async def run() -> None:
            try:
                async for value in stream:
                    self.latest[name] = value
                    self.history.setdefault(name, []).append(value)
                    self.log.append((name, value))
                    self._changed.set()
            except Exception as exc:  # surfaced by `until`, not lost in a task
                self.errors.append((name, exc))
                self._changed.set()

        self._tasks.append(asyncio.create_task(run()))

    def poke(self) -> None:
        """Wake `until` (for a change the test made itself)."""
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], seconds: float = GUARD) -> None:
        """Wait until `predicate()` holds, re-checking after every recorded change."""
        async with asyncio.timeout(seconds):
            while not predicate():
                if self.errors:
                    name, exc = self.errors[0]
                    raise AssertionError(f"stream {name} failed: {exc!r}") from exc
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        """Stop following."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task




async def expire(session: Any, proxy: Any, server_hosts: str) -> None:
    """Expire `session`'s ZooKeeper session on the server, as a long partition would.

    `session` must reach the server through `proxy`. The proxy is black-holed (so the
    session's own client cannot re-attach), another client attaches to the same session
    id and password straight to the server and closes it, then the proxy is healed and
    reset: the first client reconnects and learns its session has expired (LOST).
    """
    from kazoo.client import KazooClient

    session_id, password = session.client.client_id

    def close_it() -> None:
        other = KazooClient(server_hosts, client_id=(session_id, password),
                            timeout=session.session_timeout)
        other.start()
        other.stop()
        other.close()

    proxy.blackhole()
    await asyncio.to_thread(close_it)
    proxy.heal()
    proxy.reset()
