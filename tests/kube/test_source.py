"""KubePodSource against the simulated API server, over real HTTP on loopback.

Each test provokes one situation on a `SimCluster` (a change during a paged list, an
expired continue token, compaction, a dropped or stalled stream, a scripted 429, raw bad
lines) and checks what the engine would see: pages of one snapshot, exactly the later
events, `Expired`, `SourceUnavailable` with its `retry_after`, or skipped-and-counted
lines with the stream carrying on. `asyncio.timeout` only bounds a test that would
otherwise hang; nothing waits on wall time to synchronise.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from httpproxy import HttpProxy

from reconciler import (
    Bookmark,
    Event,
    Expired,
    ObjectKey,
    Page,
    Record,
    SourceUnavailable,
    State,
)
from synchronizer.kinds import PODS
from synchronizer.kube import AccessDenied, ClusterClient, ClusterEndpoint, KubeSource, probe
from synchronizer.kube.connection import Credentials, Loaded
from synchronizer.metrics import PrometheusMetrics
from synchronizer.simulator import SimCluster, Simulator, make_pod
from synchronizer.simulator.nodes import make_namespace

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
BOUND = 20.0
"""Seconds after which a test is presumed hung (never reached when things work)."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=3600.0, seed=7)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def cluster(sim: Simulator) -> SimCluster:
    return sim.add_cluster("c1")


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics()


@pytest.fixture
async def source(
    sim: Simulator, cluster: SimCluster, metrics: PrometheusMetrics
) -> AsyncIterator[KubeSource]:
    src = KubePodSource(
        sim.url_for(cluster.id), cluster_id=cluster.id, biz_id=7, page_size=100,
        watch_timeout=60, inactivity=30, clock=lambda: NOW, metrics=metrics,
    )
    try:
        yield src
    finally:
        await src.aclose()


RNG = random.Random(3)
_proxy: HttpProxy | None = None
_linger = 0.0


@pytest.fixture(autouse=True, params=["direct", "batched", "proxied"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Every test runs three times: watches on our own transport, decoding each line as
    it arrives and decoding lines in the loop's shared batch (`kube.batch`), and behind an
    HTTP proxy, where lists and watches both go through aiohttp's session (design 010)."""
    global _proxy, _linger
    if request.param != "proxied":
        _linger = 0.01 if request.param == "batched" else 0.0
        try:
            yield request.param
        finally:
            _linger = 0.0
        return
    _proxy = await HttpProxy().start()
    try:
        yield request.param
    finally:
        proxy, _proxy = _proxy, None
        await proxy.close()


def KubePodSource(url: str, *, cluster_id: str | None = None, **kw: Any) -> KubeSource:
    """A pods source owning its own client (the shape these tests were written in),
    through the proxy when the test runs proxied."""
    if _proxy is None:
        client = ClusterClient.from_url(url, cluster_id=cluster_id)
    else:
        endpoint = ClusterEndpoint(id=cluster_id or url, server=url)
        loaded = Loaded(server=url, authorization=None, ca_file=None, cert_file=None,
                        key_file=None, verify=True, sni_hostname=None, proxy=_proxy.url,
                        config=None)
        client = ClusterClient.of(Credentials(endpoint, loaded, lambda: loaded))
    return KubeSource(client, kind=PODS, owns_client=True,
                      **{"decode_linger": _linger, **kw})


def pod(name: str, namespace: str = "ns-a", **kw: Any) -> dict[str, Any]:
    return make_pod(namespace, name, rng=RNG, **kw)


def fill(cluster: SimCluster, n: int, prefix: str = "p") -> None:
    cluster.create_many(pod(f"{prefix}-{i:05d}") for i in range(n))


def sample(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value("bkcmdb_sync_" + name, {"kind": "pods", **labels})
    return value or 0.0


async def collect_list(source: KubeSource) -> list[Page]:
    async with asyncio.timeout(BOUND):
        return [p async for p in source.list()]


async def take(source: KubeSource, since: int, n: int) -> list[Event]:
    """The first `n` events of a watch from `since`, then the stream is closed."""
    out: list[Event] = []
    async with asyncio.timeout(BOUND), aclosing(source.watch(since)) as events:
        async for event in events:
            out.append(event)
            if len(out) == n:
                break
    return out


def records(events: list[Event]) -> list[Record]:
    return [e for e in events if isinstance(e, Record)]


# -- list -------------------------------------------------------------------------------------


async def test_list_holds_vouched_objects_without_projecting_them(
    source: KubeSource, cluster: SimCluster
) -> None:
    fill(cluster, 150)
    full = {r.key: r for p in await collect_list(source) for r in p.records}
    asked: list[tuple[str, int]] = []

    async def unchanged(keys: Sequence[ObjectKey], versions: Sequence[int]) -> list[bool]:
        asked.extend(zip(keys, versions, strict=True))
        return [int(key[-1], 16) % 2 == 0 for key in keys]  # about half, by uid

    async with asyncio.timeout(BOUND):
        pages = [p async for p in source.list(unchanged)]
    held = {k for p in pages for k in p.held}
    projected = {r.key: r for p in pages for r in p.records}
    # Every object was asked about with its own version, and lands in exactly one place.
    assert sorted(asked) == sorted((k, r.version) for k, r in full.items())
    assert held == {k for k in full if int(k[-1], 16) % 2 == 0} and held
    assert projected == {k: r for k, r in full.items() if k not in held}


async def test_a_page_with_an_odd_item_is_projected_whole_and_skips_it_alone(
    source: KubeSource
) -> None:
    """The quick uid/version read of a page is typed; an item it cannot read sends the page
    down the ordinary path (the odd item skipped and counted), never fails the list."""
    good = pod("good")
    good["metadata"].update(uid="u-good", resourceVersion="7")
    odd = pod("odd")
    odd["metadata"].update(uid=5, resourceVersion="8")  # a uid that is not a string
    body = orjson.dumps({"kind": "PodList", "metadata": {"resourceVersion": "9"},
                         "items": [good, odd]})
    async def everything(heads: Sequence[tuple[ObjectKey, int]]) -> list[bool]:
        return [True] * len(heads)

    version, token, records, held, skipped = await source._read_page(body, everything)
    assert (version, token) == ("9", "")
    assert [r.key for r in records] == ["u-good"] and held == [] and skipped == 1


async def test_list_pages_are_one_consistent_snapshot(
    source: KubeSource, cluster: SimCluster
) -> None:
    fill(cluster, 250)
    truth = {p["uid"]: p for p in cluster.truth()}
    version = cluster.resource_version
    pages: list[Page] = []
    async with asyncio.timeout(BOUND), aclosing(source.list()) as listing:
        async for page in listing:
            pages.append(page)
            if len(pages) == 1:
                # Pods change while the list is half-way: later pages must not show it.
                ns, name = cluster.random_key(RNG) or ("", "")
                cluster.delete(ns, name)
                cluster.create(pod("late-arrival"))
                cluster.update("ns-a", "p-00249", lambda p: p["metadata"]["labels"].update(x="1"))
    assert [len(p.records) for p in pages] == [100, 100, 50]
    assert {p.version for p in pages} == {version}
    got = {r.key: r for p in pages for r in p.records}
    assert set(got) == set(truth)
    for key, record in got.items():
        assert record.version == truth[key]["rv"] <= version
        assert record.state is State.ACTIVE and record.query_at == NOW
        assert record.fields["biz_id"] == 7
    assert cluster.requests["list"] == 3


async def test_list_of_an_empty_cluster_is_one_empty_page(
    source: KubeSource, cluster: SimCluster
) -> None:
    pages = await collect_list(source)
    assert pages == [Page(cluster.resource_version, [], 0)]


async def test_expired_continue_token_raises_expired_and_a_new_list_starts_over(
    source: KubeSource, cluster: SimCluster
) -> None:
    fill(cluster, 250)
    cluster.fail_next(410, on="list", after_pages=1)
    seen: list[Page] = []
    with pytest.raises(Expired, match="410"):
        async with asyncio.timeout(BOUND):
            async for page in source.list():
                seen.append(page)
    assert len(seen) == 1
    pages = await collect_list(source)
    assert sum(len(p.records) for p in pages) == 250


async def test_list_429_carries_retry_after(source: KubeSource, cluster: SimCluster) -> None:
    cluster.fail_next(429, on="list", retry_after=3)
    with pytest.raises(SourceUnavailable) as info:
        await collect_list(source)
    assert info.value.retry_after == 3.0
    assert not isinstance(info.value, AccessDenied)
    assert "429" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_list_server_errors_are_unavailable(
    source: KubeSource, cluster: SimCluster, status: int
) -> None:
    cluster.fail_next(status, on="list")
    with pytest.raises(SourceUnavailable, match=str(status)):
        await collect_list(source)


@pytest.mark.parametrize("status", [401, 403])
async def test_list_refused_credentials_are_access_denied(
    source: KubeSource, cluster: SimCluster, status: int
) -> None:
    cluster.fail_next(status, on="list")
    with pytest.raises(AccessDenied, match=f"cluster c1: list pods: HTTP {status}"):
        await collect_list(source)


async def test_list_skips_unprojectable_pods_and_counts_them(
    source: KubeSource, cluster: SimCluster, metrics: PrometheusMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fill(cluster, 5)
    bad = pod("bad-phase")
    bad["status"]["phase"] = 5
    uid = cluster.create(bad)["metadata"]["uid"]
    with caplog.at_level("WARNING"):
        pages = await collect_list(source)
    assert sum(len(p.records) for p in pages) == 5
    assert sum(p.skipped for p in pages) == 1
    # held: listed though not stored, so the full sync never tombstones its live row
    assert [key for p in pages for key in p.held] == [uid]
    assert sample(metrics, "skipped_objects_total", cluster="c1", reason="bad_object") == 1
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "bad-phase" in line and "status.phase" in line and "\n" not in line
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize("transport", ["direct"], indirect=True)  # a proxy is reachable
async def test_unreachable_server_is_unavailable(unused_tcp_port: int) -> None:
    src = KubePodSource(f"http://127.0.0.1:{unused_tcp_port}", cluster_id="x", biz_id=1)
    async with src:
        with pytest.raises(SourceUnavailable, match=r"cluster x: list pods: Client.*Connect"):
            await collect_list(src)


# -- watch ------------------------------------------------------------------------------------


async def test_watch_from_a_version_yields_exactly_the_later_events(
    source: KubeSource, cluster: SimCluster, metrics: PrometheusMetrics
) -> None:
    fill(cluster, 20)
    pages = await collect_list(source)
    since = pages[0].version
    cluster.create(pod("new-one"))
    cluster.update("ns-a", "p-00003", lambda p: p["metadata"]["labels"].update(team="x"))
    gone = cluster.delete("ns-a", "p-00004")
    events = await take(source, since, 3)
    assert [(type(e), e.version) for e in events] == [
        (Record, since + 1), (Record, since + 2), (Record, since + 3)]
    added, modified, deleted = records(events)
    assert added.fields["name"] == "new-one" and added.state is State.ACTIVE
    assert modified.fields["name"] == "p-00003" and '"team":"x"' in modified.fields["labels"]
    assert deleted.key == gone["metadata"]["uid"] and deleted.deleted
    assert deleted.version == cluster.resource_version
    for type_ in ("ADDED", "MODIFIED", "DELETED"):
        assert sample(metrics, "events_total", cluster="c1", type=type_) == 1


async def test_bookmarks_are_handed_over_when_they_move_the_version_or_are_asked_for(
    sim: Simulator, metrics: PrometheusMetrics
) -> None:
    """A pods watch of a cluster whose other kinds change: bookmarks at a version the
    reader already has are counted, never handed over; the first that moves it is handed
    over at once; later ones within `bookmark_every` are held until someone asks
    (`prompt`), and the newest held one comes out before the stream ends."""
    cluster = sim.add_cluster("quiet", bookmark_interval=0.05)
    fill(cluster, 3)
    since = cluster.resource_version
    src = KubePodSource(sim.url_for("quiet"), cluster_id="quiet", biz_id=1, metrics=metrics,
                        bookmark_every=3600.0, watch_timeout=60)

    def bookmarks() -> float:
        return sample(metrics, "events_total", cluster="quiet", type="BOOKMARK")

    def new_namespace(name: str) -> int:
        cluster.create(make_namespace(name), resource="namespaces")
        return cluster.resource_version

    async with src, asyncio.timeout(BOUND):
        stream = src.watch(since)
        first = asyncio.ensure_future(anext(stream))
        await cluster.wait_watchers(1)
        for _ in range(3):  # bookmarks at `since`: nothing to hand over
            await cluster.wait_until(lambda n=bookmarks() + 1: bookmarks() >= n)
        assert not first.done()
        moved = new_namespace("ns-one")
        assert await first == Bookmark(moved)
        held = new_namespace("ns-two")
        second = asyncio.ensure_future(anext(stream))
        await cluster.wait_until(lambda n=bookmarks() + 2: bookmarks() >= n)
        assert not second.done()  # held: the last one handed over is not an hour old
        stream.prompt(held)
        assert await second == Bookmark(held)
        last = new_namespace("ns-three")

        async def rest() -> list[Event]:
            return [e async for e in stream]

        after = asyncio.ensure_future(rest())  # a reader: behind a proxy, it does the reading
        await cluster.wait_until(lambda n=bookmarks() + 2: bookmarks() >= n)
        cluster.end_streams(resource="pods")
        assert await after == [Bookmark(last)]


async def test_server_ending_the_stream_returns_normally(sim: Simulator) -> None:
    cluster = sim.add_cluster("short")
    src = KubePodSource(sim.url_for("short"), biz_id=1, watch_timeout=1, inactivity=30)
    async with src, asyncio.timeout(BOUND):
        events = [e async for e in src.watch(cluster.resource_version)]
    assert events == []


@pytest.mark.parametrize("reset", [False, True])
async def test_dropped_stream_raises_and_resuming_from_the_last_version_loses_nothing(
    source: KubeSource, cluster: SimCluster, reset: bool
) -> None:
    since = cluster.resource_version
    cluster.create(pod("a-1"))
    cluster.create(pod("a-2"))
    seen: list[Event] = []
    with pytest.raises(SourceUnavailable, match="cluster c1: watch pods"):
        async with asyncio.timeout(BOUND), aclosing(source.watch(since)) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 2:
                    assert cluster.drop_streams(reset=reset) == 1
                    # Changes made while nobody watches.
                    cluster.create(pod("b-1"))
                    cluster.delete("ns-a", "a-1")
    assert [r.fields["name"] for r in records(seen)] == ["a-1", "a-2"]
    resumed = await take(source, seen[-1].version, 2)
    assert [(r.fields["name"], r.state) for r in records(resumed)] == [
        ("b-1", State.ACTIVE), ("a-1", State.DELETED)]


async def test_watch_from_a_compacted_version_raises_expired(
    source: KubeSource, cluster: SimCluster, metrics: PrometheusMetrics
) -> None:
    since = cluster.resource_version
    fill(cluster, 10)
    cluster.compact()
    with pytest.raises(Expired, match="410"):
        await take(source, since, 1)
    assert sample(metrics, "events_total", cluster="c1", type="ERROR") == 1


async def test_compaction_overtaking_an_open_watch_raises_expired(
    source: KubeSource, cluster: SimCluster
) -> None:
    fill(cluster, 2)
    cluster.stall_streams()
    async with asyncio.timeout(BOUND), aclosing(source.watch(cluster.resource_version)) as events:
        first = asyncio.ensure_future(anext(events))
        await cluster.wait_watchers(1)
        fill(cluster, 5, prefix="q")
        cluster.compact()
        cluster.stall_streams(False)
        with pytest.raises(Expired):
            await first


async def test_stalled_stream_is_unavailable_after_the_inactivity_bound(
    sim: Simulator, cluster: SimCluster
) -> None:
    cluster.stall_streams()
    src = KubePodSource(sim.url_for(cluster.id), biz_id=1, inactivity=0.2)
    async with src:
        with pytest.raises(SourceUnavailable, match="stalled"):
            await take(src, cluster.resource_version, 1)


async def test_watch_429_carries_retry_after(source: KubeSource, cluster: SimCluster) -> None:
    cluster.fail_next(429, on="watch", retry_after=2)
    with pytest.raises(SourceUnavailable) as info:
        await take(source, cluster.resource_version, 1)
    assert info.value.retry_after == 2.0


async def test_watch_http_410_raises_expired(source: KubeSource, cluster: SimCluster) -> None:
    cluster.fail_next(410, on="watch")
    with pytest.raises(Expired):
        await take(source, cluster.resource_version, 1)


async def test_watch_from_a_version_ahead_of_a_rebuilt_cluster_raises_expired(
    source: KubeSource, cluster: SimCluster
) -> None:
    fill(cluster, 5)
    for n in range(20):  # history the restored etcd will not have
        cluster.update("ns-a", "p-00000", lambda p, n=n: p["metadata"]["labels"].update(n=str(n)))
    since = cluster.resource_version
    cluster.reset_incarnation(start_rv=1)
    assert cluster.resource_version < since
    with pytest.raises(Expired, match="Too large resource version"):
        await take(source, since, 1)


async def test_watch_error_event_too_large_raises_expired(
    source: KubeSource, cluster: SimCluster
) -> None:
    status = {"kind": "Status", "code": 504, "reason": "Timeout",
              "message": "Too large resource version: 99, current: 7",
              "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]}}
    async with asyncio.timeout(BOUND), aclosing(source.watch(cluster.resource_version)) as events:
        first = asyncio.ensure_future(anext(events))
        await cluster.wait_watchers(1)
        cluster.inject_raw(orjson.dumps({"type": "ERROR", "object": status}))
        with pytest.raises(Expired, match="Too large"):
            await first


async def test_watch_error_event_other_than_410_is_unavailable(
    source: KubeSource, cluster: SimCluster
) -> None:
    status = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd down"}
    async with asyncio.timeout(BOUND), aclosing(source.watch(cluster.resource_version)) as events:
        first = asyncio.ensure_future(anext(events))
        await cluster.wait_watchers(1)
        cluster.inject_raw(orjson.dumps({"type": "ERROR", "object": status}))
        with pytest.raises(SourceUnavailable, match="etcd down"):
            await first


async def test_bad_lines_are_skipped_and_counted_and_the_stream_carries_on(
    source: KubeSource, cluster: SimCluster, metrics: PrometheusMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_uid = pod("no-uid")
    no_uid["metadata"]["uid"] = ""
    no_uid["metadata"]["resourceVersion"] = "5"
    junk = [
        b'{"type":"ADDED","object":{"metadata":',  # torn JSON
        b"not json at all " + b"x" * 5000,  # long garbage: the log quotes an excerpt
        b'"just a string"',
        b'{"type":"SURPRISE","object":{}}',
        b'{"type":"","object":{}}',
        b'{"object":{}}',
        orjson.dumps({"type": "ADDED", "object": no_uid}),
        b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"abc"}}}',
    ]
    with caplog.at_level("WARNING"):
        async with asyncio.timeout(BOUND), aclosing(
            source.watch(cluster.resource_version)
        ) as events:
            pending = asyncio.ensure_future(anext(events))
            await cluster.wait_watchers(1)
            for line in junk:
                cluster.inject_raw(line)
            cluster.create(pod("after-the-junk"))
            first = await pending
    assert isinstance(first, Record) and first.fields["name"] == "after-the-junk"

    def skipped(reason: str) -> float:
        return sample(metrics, "skipped_objects_total", cluster="c1", reason=reason)

    assert skipped("bad_json") == 3
    assert skipped("unknown_type") == 3
    assert skipped("bad_object") == 1
    assert skipped("bad_bookmark") == 1
    assert sample(metrics, "events_total", cluster="c1", type="UNKNOWN") == 6
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == len(junk)
    assert all("\n" not in line and len(line) < 600 for line in lines)
    assert any("missing metadata.uid" in line for line in lines)
    assert all(r.exc_info is None for r in caplog.records)


async def test_big_objects_and_odd_names_come_through_intact(
    source: KubeSource, cluster: SimCluster
) -> None:
    huge = pod("huge")
    huge["metadata"]["annotations"]["blob"] = "x" * (1024 * 1024)
    big_annotation = pod("big-annotation")
    big_annotation["metadata"]["annotations"]["note"] = "é\"\\\n" * 25_000
    odd = pod('quote"back\\slash-ünïcødé-名字-🙂')
    odd["metadata"]["labels"]["say"] = 'he said "hi"\n'
    since = cluster.resource_version
    for p in (huge, big_annotation, odd):
        cluster.create(p)
    cluster.create(pod("last"))
    events = await take(source, since, 4)
    names = [r.fields["name"] for r in records(events)]
    assert names == ["huge", "big-annotation", 'quote"back\\slash-ünïcødé-名字-🙂', "last"]
    assert orjson.loads(records(events)[2].fields["labels"])["say"] == 'he said "hi"\n'
    # And the same objects in a list.
    pages = await collect_list(source)
    assert {r.fields["name"] for p in pages for r in p.records} == set(names)


async def test_a_line_over_the_bound_is_skipped_without_buffering_it(
    sim: Simulator, cluster: SimCluster, metrics: PrometheusMetrics
) -> None:
    src = KubePodSource(sim.url_for(cluster.id), cluster_id=cluster.id, biz_id=1,
                        max_line=64 * 1024, metrics=metrics)
    async with src, asyncio.timeout(BOUND), aclosing(src.watch(cluster.resource_version)) as ev:
        pending = asyncio.ensure_future(anext(ev))
        await cluster.wait_watchers(1)
        cluster.inject_raw(b'{"type":"ADDED","object":{"x":"' + b"y" * 300_000 + b'"}}')
        cluster.create(pod("small"))
        first = await pending
    assert isinstance(first, Record) and first.fields["name"] == "small"
    assert sample(metrics, "skipped_objects_total", cluster="c1", reason="line_too_long") == 1


async def test_consumer_slower_than_the_inactivity_bound_is_not_a_stall(
    sim: Simulator, cluster: SimCluster
) -> None:
    fill(cluster, 3)
    since = cluster.resource_version
    cluster.create(pod("one"))
    cluster.create(pod("two"))
    src = KubePodSource(sim.url_for(cluster.id), biz_id=1, inactivity=0.2)
    async with src, asyncio.timeout(BOUND), aclosing(src.watch(since)) as events:
        first = await anext(events)
        # The engine is busy for longer than the bound: the data is already waiting.
        await cluster.wait_delivered()
        await asyncio.sleep(0.4)  # not synchronisation: the slowness is what is tested
        second = await anext(events)
    assert [first.version, second.version] == [since + 1, since + 2]


# -- probe ------------------------------------------------------------------------------------


async def test_probe_reaches_a_simulated_cluster(sim: Simulator, cluster: SimCluster) -> None:
    await probe(ClusterEndpoint(id="c1", server=sim.url_for("c1")))


async def test_a_server_that_is_not_an_api_server_is_unavailable() -> None:
    from aiohttp import web

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/api/v1/pods", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with KubePodSource(url, cluster_id="web", biz_id=1) as src:
            with pytest.raises(SourceUnavailable, match="not a list: <html>"):
                await collect_list(src)
        with pytest.raises(SourceUnavailable, match="does not answer like a Kubernetes API"):
            await probe(ClusterEndpoint(id="web", server=url))
    finally:
        await runner.cleanup()


async def test_probe_of_a_wrong_url_is_one_clear_line(sim: Simulator) -> None:
    with pytest.raises(SourceUnavailable) as info:
        await probe(ClusterEndpoint(id="nope", server=sim.url_for("nope")))
    assert "404" in str(info.value) and "\n" not in str(info.value)
