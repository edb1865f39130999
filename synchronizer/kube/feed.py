"""A watch stream's events between the socket and the engine, bookmarks held back.

The middle of the watch: network chunks come in (`data`), are framed into lines
(`lines.LineFramer`) and decoded into events (`events.EventDecoder`) at once, and wait in
a small queue for the one reader, the engine's watch loop (`next`). Decoding on arrival
lets the transport (`wire.WatchProtocol`) do it inside `data_received`, so a chunk that
only carries a bookmark wakes no task: an idle fleet's watches receive little else, and a
task wake per bookmark was most of an idle instance's CPU (design 010).

Bookmarks are therefore handed over lazily. A bookmark that does not move the version
past what the reader already has is dropped (counted, never handed). One that does is
held, and handed over:
- when the reader would otherwise wait and the last bookmark it got is at least
  `bookmark_every` seconds old (so the resume point and /status stay fresh: a real API
  server bookmarks about once a minute, so with one every bookmark comes through);
- when someone waits for that version (`prompt`, from `ClusterReconciler.received`);
- before the stream ends or fails, so a reconnect resumes from the newest version.
A change event supersedes a held bookmark (its version is higher). Events keep their
order; an ERROR event or a failure ends the stream after what came before it.

Flow control: past `HIGH` queued events the transport is asked to stop reading (`pause`),
and to read again once the reader has taken the queue down to `LOW`.

Batched decoding (`batch`, given for the direct transport): a change line is not decoded
where it arrives but waits, with whatever lines follow it on this watch, for the shared
`batch.DecodeBatch`, which decodes many watches' lines in one pass a moment later and
then wakes their readers (`wake`). A reader that runs meanwhile decodes its own waiting
lines first; so does the end of the stream, and a chunk that brings `AT_ONCE` lines or
more (a busy watch). A plain bookmark with no line waiting before it is still read where
it arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from reconciler import Bookmark, Event

from .batch import DecodeBatch
from .events import EventDecoder
from .lines import LineFramer

HIGH = 256
"""Queued events past which the transport stops reading."""
LOW = 32
"""Queued events below which it reads again."""
BOOKMARK_EVERY = 5.0
"""Seconds between two bookmarks handed over when nobody asks for one."""
AT_ONCE = 16
"""Lines waiting for the batch past which a feed decodes them where they arrive: a busy
watch keeps the decoder warm by itself, and waiting would cap its rate at about `HIGH`
lines per batch delay."""


class WatchFeed:
    """Chunks in, events out; one reader (see the module docstring)."""

    __slots__ = ("_batch", "_bookmark", "_clock", "_decode", "_end", "_every", "_framer",
                 "_handed", "_handed_at", "_held", "_lines", "_paused", "_queue", "_wanted",
                 "arrivals", "more", "pause", "resume", "taken", "wake")

    def __init__(self, since: int, *, framer: LineFramer, decoder: EventDecoder,
                 clock: Callable[[], float], bookmark_every: float = BOOKMARK_EVERY,
                 batch: DecodeBatch | None = None) -> None:
        self._framer = framer
        self._batch = batch
        self._lines: list[bytes] = []
        """Lines waiting for the batch, in arrival order (only with a batch)."""
        self.wake: Callable[[], None] | None = None
        """Wakes the reader (the transport's part, with a batch)."""
        self._decode = decoder.decode
        self._bookmark = decoder.bookmark_version
        self.more: Callable[[], Awaitable[None]] = _unset
        """Waits until `data` or `finish` may have been called: the transport's part, set
        once the transport exists."""
        self._clock = clock
        self._every = bookmark_every
        self._queue: deque[Event] = deque()
        self._end: BaseException | None = None
        """Set when the stream is over: `StopAsyncIteration` for a normal end."""
        self._held = 0
        self._handed = since
        self._handed_at = float("-inf")
        self._wanted = 0
        self._paused = False
        self.pause: Callable[[], None] | None = None
        self.resume: Callable[[], None] | None = None
        self.arrivals = 0
        """Chunks received (the inactivity watchdog's measure of life)."""
        self.taken = 0
        """Events handed to the reader."""

    # -- the transport's side ---------------------------------------------------------

    def data(self, chunk: bytes) -> bool:
        """Take one chunk; True when the reader should be woken (something to hand)."""
        self.arrivals += 1
        if self._end is not None:
            return False
        lines = self._lines
        defer = self._batch is not None
        for line in self._framer.feed(chunk):
            if lines:  # behind a waiting line, even a bookmark waits
                lines.append(line)
            elif not self._line(line, defer=defer):
                return True
        if len(lines) >= AT_ONCE:
            self.decode_waiting()
        if len(self._queue) >= HIGH and not self._paused and self.pause is not None:
            self._paused = True
            self.pause()
        return self._news()

    def decode_waiting(self) -> None:
        """Decode the lines waiting for the batch (the batch's call, or the reader's)."""
        lines = self._lines
        if not lines:
            return
        self._lines = []
        for line in lines:
            if self._end is not None or not self._line(line):
                return

    def woken(self) -> None:
        """Wake the reader if there is anything to take (the batch's call)."""
        if self.wake is not None and self._news():
            self.wake()

    def _news(self) -> bool:
        """Whether the reader has anything to take now: an event, the end, or a held
        bookmark that is due."""
        return bool(self._queue) or self._end is not None or (
            self._held > self._handed and self._due())  # (no call for a repeated one)

    def _due(self) -> bool:
        """A held bookmark, if any, is to be handed over now (or at the end: see the
        module docstring)."""
        return self._wanted > self._handed or self._clock() - self._handed_at >= self._every

    def finish(self, error: BaseException | None) -> None:
        """The stream is over: a last line without its newline, then `error` or the end."""
        if self._end is not None:
            return
        self.decode_waiting()  # they came before the end
        if self._end is not None:
            return
        if error is None:
            for line in self._framer.end():
                if not self._line(line):
                    return
        self._end = error if error is not None else StopAsyncIteration()

    def _line(self, line: bytes, *, defer: bool = False) -> bool:
        """Decode one line; False when it ended the stream (an ERROR event). `defer`: a
        line that is not a plain bookmark waits for the batch instead."""
        version = self._bookmark(line)  # the common case, without an event object
        if version >= 0:
            if version > self._held:
                self._held = version
            return True
        if defer and self._batch is not None:
            self._lines.append(line)
            self._batch.add(self)
            return True
        return self._event(line)

    def _event(self, line: bytes) -> bool:
        """Decode a line that is not a plain bookmark; False when it ended the stream."""
        try:
            event = self._decode(line)
        except Exception as exc:  # Expired / SourceUnavailable from an ERROR event
            self._end = exc
            return False
        if event is None:
            return True
        if type(event) is not Bookmark:
            self._queue.append(event)
        elif event.version > self._held:
            self._held = event.version
        return True

    @property
    def over(self) -> bool:
        """True once the stream has ended or failed (events may still be queued)."""
        return self._end is not None

    @property
    def waiting(self) -> int:
        """Events decoded and not yet taken, and lines waiting to be decoded."""
        return len(self._queue) + len(self._lines)

    # -- the reader's side ------------------------------------------------------------

    def prompt(self, version: int) -> None:
        """Someone waits for `version`: hand over bookmarks at once until one reaches it."""
        if version > self._wanted:
            self._wanted = version

    def _pick(self) -> Event | None:
        """The next event to hand over now, if any; raises at the end."""
        if self._lines:
            self.decode_waiting()
        queue = self._queue
        if queue:
            event = queue.popleft()
            if self._paused and len(queue) <= LOW:
                self._paused = False
                if self.resume is not None:
                    self.resume()
            self.taken += 1
            if event.version > self._handed:
                self._handed = event.version
            return event
        if self._held > self._handed and (self._end is not None or self._due()):
            self._handed = self._held
            self._handed_at = self._clock()
            self.taken += 1
            return Bookmark(self._held)
        if self._end is not None:
            raise self._end
        return None

    async def next(self) -> Event:
        """The next event; raises `StopAsyncIteration` at a normal end, else the failure."""
        while True:
            event = self._pick()
            if event is not None:
                return event
            await self.more()


async def _unset() -> None:
    raise RuntimeError("WatchFeed.more was not set")
