"""`Latest`: a value that changes over time, observed level-triggered.

Why not a queue of changes: consumers of coordination must act on the current state, not
replay every intermediate one (a controller that falls behind should jump straight to the
newest owned set, never start and stop a reconciler for a state that is already gone).
So a `Latest` keeps one value and a version counter; a reader waits for a version newer
than the one it saw and gets the newest value, however many changes it missed. Any
number of readers, no back-pressure on the writer. Loop-thread only: kazoo's threads hand
their news to the loop with `call_soon_threadsafe` before anything touches a `Latest`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    """One value, a version that grows on every change, and waiters for newer versions."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def value(self) -> T:
        """The current value."""
        return self._value

    @property
    def version(self) -> int:
        """How many changes there have been."""
        return self._version

    def set(self, value: T, *, force: bool = False) -> bool:
        """Replace the value; wake the readers. Returns False (and wakes nobody) if equal,
        unless `force` (a change that equality does not see, such as a spec's origin)."""
        if value == self._value and not force:
            return False
        self._value = value
        self._version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        return True

    async def wait_newer(self, version: int) -> tuple[int, T]:
        """Wait until the version exceeds `version`; return the newest (version, value)."""
        while self._version <= version:
            await self._changed.wait()
        return self._version, self._value

    async def wait_for(self, predicate: Callable[[T], bool]) -> T:
        """Wait until the value satisfies `predicate` (checked now and on every change)."""
        while not predicate(self._value):
            await self.wait_newer(self._version)
        return self._value

    async def stream(self) -> AsyncIterator[T]:
        """Yield the current value, then the newest value after each change."""
        seen = self._version
        yield self._value
        while True:
            seen, value = await self.wait_newer(seen)
            yield value
