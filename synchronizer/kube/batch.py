"""Watch lines decoded a moment late, many watches' at once.

Why: in a quiet fleet each change event arrives alone, on its own connection, between
other watches' bookmarks. Decoded where it arrives (design 010), each Pod's projection
runs with the decoder's code and data cold in the caches: measured on a fleet of 200
clusters at 400 events/s, 48 µs a projection against 23 µs in a burst of one cluster,
and the event's whole path from bytes to the engine's queue 78 µs against 33. Holding
lines for `delay` seconds and decoding every waiting watch's lines in one pass, then
waking their readers one after another, took the projection to 31 µs and the path to
57 µs (docs/benchmarks.md, "Fifth pass"). A bookmark is still read where it arrives,
unless lines wait before it on its own watch (order is kept).

One batch per event loop and delay, shared by every watch of the instance: the point is
that different watches' lines meet. `delay` is the most an event waits here, small
against the writer's own linger.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol


class Waiting(Protocol):
    """A feed with lines waiting to be decoded (`feed.WatchFeed`)."""

    def decode_waiting(self) -> None:
        """Decode the lines waiting (a no-op when the reader already did)."""

    def woken(self) -> None:
        """Wake the reader if it has something to take."""


_BATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, DecodeBatch]] = (
    weakref.WeakKeyDictionary())


class DecodeBatch:
    """Feeds whose lines wait, decoded together `delay` seconds after the first came."""

    __slots__ = ("_delay", "_feeds", "_handle")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._feeds: list[Waiting] = []
        self._handle: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, delay: float) -> DecodeBatch:
        """The running loop's batch of `delay` seconds (held weakly by the loop: a batch
        keeps no reference to its loop)."""
        batches = _BATCHES.setdefault(asyncio.get_running_loop(), {})
        batch = batches.get(delay)
        if batch is None:
            batch = batches[delay] = cls(delay)
        return batch

    def add(self, feed: Waiting) -> None:
        """`feed` has just got its first waiting line (called in the loop)."""
        self._feeds.append(feed)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self._delay, self._run)

    def _run(self) -> None:
        self._handle = None
        feeds, self._feeds = self._feeds, []
        for feed in feeds:
            feed.decode_waiting()
        for feed in feeds:  # after every decode: the readers' tasks then run back to back
            feed.woken()
