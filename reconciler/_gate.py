"""The gate: a mutex-gated, bounded queue that parks watch events during a full sync.

Why: a full sync writes what the list saw at version L; a watch event observed meanwhile
may be older or newer than L. Parking events until the list's records are queued, then
replaying only those newer than L, in arrival order, means full-sync data and events
never overtake each other (and the store's version rule makes any leftover overlap
harmless). One lock orders `put`, `close` and `open`, so no event slips past a closing
gate. When more may not be parked — past `capacity`, or when `admit()` says no (the
instance's memory budget: parked events count toward it) — the parked events are all
dropped and `overflowed` is set: the caller runs another full sync, whose list is the
truth, so nothing is lost and memory stays bounded. `count(n)` reports the number parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._types import Record


class Gate:
    """Open: events pass to `dispatch`. Closed: events are parked (bounded)."""

    def __init__(
        self,
        *,
        capacity: int,
        dispatch: Callable[[Record], Awaitable[None]],
        enabled: bool = True,
        admit: Callable[[], bool] | None = None,
        count: Callable[[int], None] | None = None,
    ) -> None:
        self._capacity = capacity
        self._enabled = enabled
        self._dispatch = dispatch
        self._admit = admit
        self._count = count
        self._lock = asyncio.Lock()
        self._open = True
        self._parked: list[Record] = []
        self.overflowed = False
        self.overflows = 0

    @property
    def parked(self) -> int:
        """Events waiting for the full sync to end."""
        return len(self._parked)

    @property
    def is_open(self) -> bool:
        """True while events pass straight through."""
        return self._open

    async def put(self, record: Record) -> None:
        """Pass `record` on, or park it while a full sync runs."""
        async with self._lock:
            if self._open:
                await self._dispatch(record)
            elif self.overflowed:
                return  # dropped: the follow-up full sync covers it
            elif len(self._parked) >= self._capacity or (
                    self._admit is not None and not self._admit()):
                self._parked.clear()
                self._counted()
                self.overflowed = True
                self.overflows += 1
            else:
                self._parked.append(record)
                self._counted()

    def _counted(self) -> None:
        if self._count is not None:
            self._count(len(self._parked))

    async def close(self) -> None:
        """Start parking events (a full sync begins)."""
        async with self._lock:
            self._open = not self._enabled

    async def open(self, list_version: int | None) -> bool:
        """Replay parked events newer than `list_version` in order, then let events pass.

        `None` (the list failed) replays every parked event. Returns whether the gate
        overflowed while closed, and clears that flag: the caller must then sync again.
        """
        async with self._lock:
            parked, self._parked = self._parked, []
            self._counted()
            for record in parked:
                if list_version is None or record.version > list_version:
                    await self._dispatch(record)
            self._open = True
            overflowed, self.overflowed = self.overflowed, False
            return overflowed

    def abandon(self) -> int:
        """Open without replaying: drop the parked events; return how many were dropped.

        For a full sync that is being cancelled or whose senders are gone: replaying would
        wait on parts that no longer run. Nothing is lost for good: whoever syncs this
        scope next (this reconciler restarted, or another owner) lists it again.
        Synchronous on purpose: it must work inside a cancelled task's cleanup.
        """
        dropped = len(self._parked)
        self._parked = []
        self._counted()
        self._open = True
        self.overflowed = False
        return dropped
