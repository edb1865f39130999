"""`WatchFeed`: decoded on arrival, handed over in order, bookmarks held back (design 010).

Pure tests: chunks are fed by hand, the clock is a number the test moves, and `more` is
never awaited (a test that would wait fails instead), so every case is deterministic.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from datetime import UTC, datetime
from typing import cast

import orjson
import pytest
from watchlines import added, bookmark

from reconciler import Bookmark, Event, Expired, Record, SourceUnavailable
from synchronizer.kinds import PODS, Projection
from synchronizer.kube.batch import DecodeBatch
from synchronizer.kube.events import EventDecoder
from synchronizer.kube.feed import AT_ONCE, HIGH, LOW, WatchFeed
from synchronizer.kube.lines import LineFramer

NOW = datetime(2024, 5, 1, tzinfo=UTC)


class WouldWait(Exception):
    """The feed has nothing to hand over now and would wait for the transport."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def project(raw: bytes, observed: datetime, deleted: bool) -> Record:
    return PODS.project(raw, Projection(resource=PODS.resources[0], biz_id=1,
                                        observed=observed, deleted=deleted))


class HandBatch:
    """A `DecodeBatch` the test runs by hand."""

    def __init__(self) -> None:
        self.feeds: list[WatchFeed] = []

    def add(self, feed: WatchFeed) -> None:
        self.feeds.append(feed)

    def run(self) -> None:
        feeds, self.feeds = self.feeds, []
        for feed in feeds:
            feed.decode_waiting()
        for feed in feeds:
            feed.woken()


def feed_of(since: int, clock: Clock, every: float = 5.0,
            batch: HandBatch | DecodeBatch | None = None,
            log: list[str] | None = None) -> WatchFeed:
    def skip(reason: str, what: str) -> None:
        raise AssertionError(f"skipped {what} ({reason})")

    def logged(raw: bytes, observed: datetime, deleted: bool) -> Record:
        record = project(raw, observed, deleted)
        if log is not None:
            log.append(f"decode {record.fields['name']}")
        return record

    decoder = EventDecoder(cluster="c", kind="pods", project=logged, clock=lambda: NOW,
                           metrics=None, skip=skip)
    feed = WatchFeed(since, framer=LineFramer(max_line=1 << 20, on_oversized=lambda: None),
                     decoder=decoder, clock=clock, bookmark_every=every,
                     batch=cast(DecodeBatch, batch))

    async def never() -> None:
        raise WouldWait

    feed.more = never
    return feed






def error(code: int) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": {
        "kind": "Status", "code": code, "reason": "Expired" if code == 410 else "Oops",
        "message": "gone"}}) + b"\n"


async def drain(feed: WatchFeed) -> list[Event]:
    """What the feed hands over now (it must not need to wait)."""
    out: list[Event] = []
    while True:
        try:
            out.append(await feed.next())
        except StopAsyncIteration:
            return out
        except WouldWait:
            return out


def versions(events: list[Event]) -> list[tuple[str, int]]:
    return [(type(e).__name__, e.version) for e in events]


async def test_a_bookmark_that_does_not_move_the_version_is_never_handed_over() -> None:
    feed = feed_of(10, Clock())
    assert feed.data(bookmark(10)) is False
    assert feed.data(bookmark(9)) is False
    assert await drain(feed) == []
    feed.finish(None)
    assert await drain(feed) == []


async def test_bookmarks_are_held_and_handed_over_every_interval_or_when_asked() -> None:
    clock = Clock()
    feed = feed_of(10, clock, every=5.0)
    assert feed.data(bookmark(11)) is True  # the first that moves it: at once
    assert await drain(feed) == [Bookmark(11)]
    clock.now += 1
    assert feed.data(bookmark(12)) is False  # held: the last one is a second old
    assert feed.data(bookmark(13)) is False
    assert await drain(feed) == []
    feed.prompt(12)  # someone waits for 12: the newest held one comes out
    assert await drain(feed) == [Bookmark(13)]
    assert feed.data(bookmark(14)) is False  # 13 satisfied the wait
    clock.now += 5
    assert await drain(feed) == [Bookmark(14)]  # due now
    clock.now += 1
    feed.data(bookmark(15))
    feed.finish(None)  # the end hands over what is held, then ends
    assert await drain(feed) == [Bookmark(15)]


async def test_events_keep_their_order_and_supersede_a_held_bookmark() -> None:
    clock = Clock()
    feed = feed_of(10, clock)
    feed.data(bookmark(11))
    assert await drain(feed) == [Bookmark(11)]
    feed.data(bookmark(12))
    assert feed.data(added("a", 13) + bookmark(14) + added("b", 15)) is True
    feed.data(bookmark(16))
    got = await drain(feed)
    assert versions(got) == [("Record", 13), ("Record", 15)]
    assert [r.fields["name"] for r in got if isinstance(r, Record)] == ["a", "b"]
    feed.finish(ConnectionError("cut"))
    with pytest.raises(ConnectionError):
        assert await feed.next() == Bookmark(16)  # the held one first ...
        await feed.next()  # ... then the failure


@pytest.mark.parametrize(("code", "raised"), [(410, Expired), (500, SourceUnavailable)])
async def test_an_error_event_ends_the_stream_after_what_came_before_it(
    code: int, raised: type[Exception]
) -> None:
    feed = feed_of(10, Clock())
    assert feed.data(added("a", 11) + error(code) + added("late", 12)) is True
    assert feed.over
    assert versions([await feed.next()]) == [("Record", 11)]
    with pytest.raises(raised):
        await feed.next()


async def test_a_flood_pauses_the_transport_until_the_reader_catches_up() -> None:
    feed = feed_of(0, Clock())
    calls: list[str] = []
    feed.pause, feed.resume = (lambda: calls.append("pause")), (lambda: calls.append("resume"))
    burst = b"".join(added(f"p{n}", n) for n in range(1, HIGH + 11))
    feed.data(burst[: len(burst) // 2])
    assert calls == []
    feed.data(burst[len(burst) // 2:])
    assert calls == ["pause"] and feed.waiting == HIGH + 10
    taken = 0
    while feed.waiting > LOW + 1:
        await feed.next()
        taken += 1
    assert calls == ["pause"]
    await feed.next()
    assert calls == ["pause", "resume"] and feed.taken == taken + 1


@pytest.mark.parametrize(("line", "version"), [
    (b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":'
     b'{"resourceVersion":"12345","creationTimestamp":null,"annotations":'
     b'{"k8s.io/initial-events-end":"true"}}}}', 12345),  # as kube-apiserver writes it
    (b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}', 7),
    (b'{"object":{"metadata":{"resourceVersion":"7"}},"type":"BOOKMARK"}', -1),  # order
    (b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"abc"}}}', -1),
    (b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":""}}}', -1),
    (b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7","annotations":'
     b'{"x":"\\"resourceVersion\\":\\"9"}}}}', 7),  # escaped: not a second key
    (b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"},'
     b'"x":{"resourceVersion":"9"}}}', -1),  # two: the general path decides
    (b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}', -1),  # torn
    (b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"7"}}}', -1),
])
def test_the_bookmark_byte_path_takes_only_plain_bookmarks(line: bytes, version: int) -> None:
    """`bookmark_version` reads a bookmark without parsing it; anything it is not sure
    of goes to the parser, which reads the same version from a bookmark in another
    order and skips what is not one."""
    decoder = EventDecoder(cluster="c", kind="pods", project=project, clock=lambda: NOW,
                           metrics=None, skip=lambda reason, what: None)
    assert decoder.bookmark_version(line) == version
    if version >= 0:
        assert decoder.decode(line) == Bookmark(version)


async def test_a_bookmark_in_another_key_order_is_held_like_any_other() -> None:
    feed = feed_of(10, Clock())
    line = b'{"object":{"metadata":{"resourceVersion":"12"}},"type":"BOOKMARK"}\n'
    assert feed.data(line) is True
    assert await drain(feed) == [Bookmark(12)]


# -- batched decoding (kube.batch) ------------------------------------------------------------

async def test_a_batched_feed_keeps_lines_in_order_until_the_batch_decodes_them() -> None:
    batch = HandBatch()
    feed = feed_of(10, Clock(), batch=batch)
    woken: list[int] = []
    feed.wake = lambda: woken.append(feed.waiting)
    assert feed.data(bookmark(11)) is True  # nothing waits: read where it arrives
    assert await drain(feed) == [Bookmark(11)] and batch.feeds == []
    assert feed.data(added("a", 12)) is False  # waits for the batch; nothing to take yet
    assert feed.data(bookmark(13) + added("b", 14)) is False  # behind it, even a bookmark
    assert batch.feeds == [feed] and feed.waiting == 3 and woken == []
    batch.run()
    assert woken == [2]  # both changes decoded, then the reader woken once
    got = await drain(feed)
    assert versions(got) == [("Record", 12), ("Record", 14)]
    assert [r.fields["name"] for r in got if isinstance(r, Record)] == ["a", "b"]
    assert feed.data(bookmark(15)) is False  # nothing waits again: held, as unbatched
    batch.run()
    assert woken == [2]


async def test_a_batched_feeds_reader_decodes_its_waiting_lines_itself() -> None:
    batch = HandBatch()
    feed = feed_of(10, Clock(), batch=batch)
    woken: list[int] = []
    feed.wake = lambda: woken.append(feed.waiting)
    feed.data(added("a", 11))
    assert versions(await drain(feed)) == [("Record", 11)]  # the reader did not wait
    batch.run()
    assert woken == []  # nothing left to take: no wake


async def test_the_end_of_a_batched_feed_comes_after_its_waiting_lines() -> None:
    feed = feed_of(10, Clock(), batch=HandBatch())
    feed.data(added("a", 11))
    feed.finish(ConnectionError("cut"))
    assert versions([await feed.next()]) == [("Record", 11)]
    with pytest.raises(ConnectionError):
        await feed.next()
    batch = HandBatch()
    feed = feed_of(10, Clock(), batch=batch)
    feed.data(added("a", 11) + error(410) + added("late", 12))
    assert not feed.over  # not read yet
    batch.run()
    assert feed.over
    assert versions([await feed.next()]) == [("Record", 11)]
    with pytest.raises(Expired):
        await feed.next()


async def test_a_busy_batched_feed_decodes_where_its_lines_arrive() -> None:
    batch = HandBatch()
    feed = feed_of(0, Clock(), batch=batch)
    calls: list[str] = []
    feed.pause, feed.resume = (lambda: calls.append("pause")), (lambda: calls.append("resume"))
    lines = [added(f"p{n}", n) for n in range(1, HIGH + 11)]
    assert feed.data(b"".join(lines[:AT_ONCE - 1])) is False  # a few: they wait
    assert feed.data(lines[AT_ONCE - 1]) is True  # enough: decoded now, the reader woken
    assert feed.data(b"".join(lines[AT_ONCE:])) is True  # a flood: decoded, and paused
    assert calls == ["pause"] and feed.waiting == HIGH + 10
    got = []
    while feed.waiting > LOW:
        got.append(await feed.next())
    assert calls == ["pause", "resume"]
    assert [e.version for e in got] == list(range(1, len(got) + 1))


async def test_a_chunk_decoded_at_once_that_ends_the_stream_wakes_the_reader() -> None:
    feed = feed_of(100, Clock(), batch=HandBatch())
    old = b'{"object":{"metadata":{"resourceVersion":"50"}},"type":"BOOKMARK"}\n'  # parsed
    assert feed.data(old * (AT_ONCE - 1) + error(410)) is True  # nothing queued: the end
    with pytest.raises(Expired):
        await feed.next()


async def test_the_loops_batch_decodes_many_watches_lines_in_one_pass() -> None:
    batch = DecodeBatch.of(0.001)
    assert DecodeBatch.of(0.001) is batch  # one per loop and delay
    order: list[str] = []
    feeds = [feed_of(10, Clock(), batch=batch, log=order) for _ in range(3)]
    woke = [asyncio.Event() for _ in feeds]
    for n, (feed, event) in enumerate(zip(feeds, woke, strict=True)):
        def wake(n: int = n, event: asyncio.Event = event) -> None:
            order.append(f"wake {n}")
            event.set()
        feed.wake = wake
        feed.data(added(f"p{n}", 11 + n))
    assert order == []  # nothing decoded where it arrived
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in woke)), 5)
    # every feed decoded before the first reader is woken
    assert order == ["decode p0", "decode p1", "decode p2", "wake 0", "wake 1", "wake 2"]
    for n, feed in enumerate(feeds):
        assert versions(await drain(feed)) == [("Record", 11 + n)]



def test_a_loops_batches_go_with_the_loop() -> None:
    async def make() -> None:
        DecodeBatch.of(0.01)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(make())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None  # the batch kept no reference to its loop
