"""How the client meets bk-cmdb's failures: rate limits, outages, refusals, cut connections,
bad credentials — with the delays it chose read from virtual time, never the wall clock."""

from __future__ import annotations

import logging
import socket

import pytest
from bkcmdb_support import BIZ, SECRET, FakeTime, Observed, settings_for

from synchronizer.bkcmdb import (
    AmbiguousWriteError,
    AuthError,
    BkCmdbClient,
    BkCmdbSettings,
    ClusterSpec,
    NamespaceSpec,
    RateLimitedError,
    RejectedError,
    ServerError,
    TransientError,
    UnreachableError,
)
from synchronizer.bkcmdb.ratelimit import TokenBucket
from synchronizer.bkcmdb.simulator import BkCmdbSimulator

CLUSTER = ClusterSpec(uid="cluster-a", name="a", biz_id=BIZ)


async def test_429_is_retried_no_sooner_than_retry_after(
        sim: BkCmdbSimulator, cmdb: BkCmdbClient, fake_time: FakeTime,
        observed: Observed) -> None:
    sim.fail(kind="status", status=429, retry_after=7, count=2, route="create_kube_cluster")
    cluster_id = await cmdb.kube.create_cluster(CLUSTER)
    assert cluster_id == 1
    assert fake_time.sleeps == [7.0, 7.0], "the server's Retry-After is the floor of each wait"
    assert sim.stats.requests["create_kube_cluster"] == 3
    assert [c[1] for c in observed.calls] == ["rate_limited", "rate_limited", "success"]


async def test_5xx_is_retried_with_growing_jittered_backoff(
        sim: BkCmdbSimulator, cmdb: BkCmdbClient, fake_time: FakeTime) -> None:
    sim.fail(kind="status", status=502, count=3, route="list_kube_cluster")
    assert await cmdb.kube.list_clusters(BIZ) == []
    assert len(fake_time.sleeps) == 3
    ceilings = [0.5, 1.0, 2.0]
    assert all(0.25 <= d <= c for d, c in zip(fake_time.sleeps, ceilings, strict=True))


async def test_retries_stop_after_max_attempts_with_the_last_error(
        sim: BkCmdbSimulator, fake_time: FakeTime) -> None:
    sim.fail(kind="status", status=503, count=None)
    async with BkCmdbClient(settings_for(sim, max_attempts=3), clock=fake_time.clock,
                            sleep=fake_time.sleep) as cmdb:
        with pytest.raises(ServerError) as info:
            await cmdb.kube.list_clusters(BIZ)
    assert info.value.http_status == 503 and len(fake_time.sleeps) == 2
    assert sum(sim.stats.requests.values()) == 3


async def test_transient_result_false_is_retried_permanent_is_not(
        sim: BkCmdbSimulator, cmdb: BkCmdbClient, fake_time: FakeTime) -> None:
    sim.fail(kind="result", code=1199002, count=2, route="create_kube_cluster")
    assert await cmdb.kube.create_cluster(CLUSTER) == 1
    assert len(fake_time.sleeps) == 2
    sim.fail(kind="result", code=1199006, message="'bk_cluster_id' data parameter verification "
             "does not pass", route="batch_create_kube_namespace")
    with pytest.raises(RejectedError) as info:
        await cmdb.kube.create_namespaces(BIZ, [NamespaceSpec(cluster_id=1, name="x")])
    assert sim.stats.requests["batch_create_kube_namespace"] == 1, "permanent: not retried"
    assert info.value.code == 1199006
    assert str(info.value) == ("bk-cmdb batch_create_kube_namespace: HTTP 200 code 1199006 "
                               "'bk_cluster_id' data parameter verification does not pass")
    sim.fail(kind="result", code=1199997, count=1)
    assert await cmdb.kube.list_clusters(BIZ) != []
    assert len(fake_time.sleeps) == 3, "bk-cmdb's own limiter (1199997) is a rate limit"


async def test_an_ambiguous_create_is_transient_and_found_by_a_relist(
        sim: BkCmdbSimulator, cmdb: BkCmdbClient, fake_time: FakeTime) -> None:
    cluster_id = await cmdb.kube.create_cluster(CLUSTER)
    specs = [NamespaceSpec(cluster_id=cluster_id, name=f"ns-{i}") for i in range(3)]
    sim.fail(kind="cut", route="batch_create_kube_namespace")
    with pytest.raises(AmbiguousWriteError) as info:
        await cmdb.kube.create_namespaces(BIZ, specs)
    assert isinstance(info.value, TransientError)
    assert sim.stats.requests["batch_create_kube_namespace"] == 1, "never blindly re-sent"
    assert fake_time.sleeps == []
    found = {n.key: n.id for n in await cmdb.kube.list_namespaces(BIZ, cluster_id)}
    assert set(found) == {s.key for s in specs}, "the cut came after bk-cmdb applied it"
    assert await cmdb.kube.create_namespaces(BIZ, specs) == found, "the next run adopts them"


async def test_a_connection_cut_before_applying_a_read_is_retried(
        sim: BkCmdbSimulator, cmdb: BkCmdbClient, fake_time: FakeTime) -> None:
    sim.fail(kind="cut_before", route="list_kube_cluster")
    assert await cmdb.kube.list_clusters(BIZ) == []
    assert len(fake_time.sleeps) == 1


async def test_an_unreachable_cmdb_is_transient(fake_time: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = BkCmdbSettings(url=f"http://127.0.0.1:{port}", app_code="bcs", max_attempts=2)
    async with BkCmdbClient(settings, clock=fake_time.clock, sleep=fake_time.sleep) as cmdb:
        with pytest.raises(UnreachableError, match="cannot connect"):
            await cmdb.kube.list_clusters(BIZ)
    assert len(fake_time.sleeps) == 1


async def test_bad_credentials_are_permanent_auth_errors(sim: BkCmdbSimulator,
                                                         fake_time: FakeTime) -> None:
    if sim.auth.mode == "gateway":
        wrong = settings_for(sim, app_secret="not-the-secret")
        expected = (400, 1640001, "bk_app_code or bk_app_secret is incorrect")
    else:
        wrong = settings_for(sim, username="")
        expected = (500, 1199027, "'user' authorization information query failed")
    async with BkCmdbClient(wrong, clock=fake_time.clock, sleep=fake_time.sleep) as cmdb:
        with pytest.raises(AuthError) as info:
            await cmdb.kube.list_clusters(BIZ)
    assert (info.value.http_status, info.value.code) == expected[:2]
    assert expected[2] in info.value.message
    assert fake_time.sleeps == [] and sim.stats.rejected_auth == 1, "not retried"
    sim.auth.denied_users = {"intruder"}
    async with BkCmdbClient(settings_for(sim, username="intruder")) as cmdb:
        with pytest.raises(AuthError) as info:
            await cmdb.kube.list_clusters(BIZ)
    assert info.value.code == 9900403


async def test_the_secret_never_reaches_logs_reprs_or_errors(
        sim: BkCmdbSimulator, fake_time: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(sim, max_attempts=2)
    sim.fail(kind="status", status=502, count=None)
    async with BkCmdbClient(settings, clock=fake_time.clock, sleep=fake_time.sleep) as cmdb:
        with pytest.raises(ServerError) as info:
            await cmdb.kube.create_cluster(CLUSTER)
        texts = [repr(settings), str(settings), repr(cmdb), repr(cmdb.transport),
                 str(info.value), repr(info.value), caplog.text]
    assert "retry 1/1" in caplog.text
    assert all(SECRET not in text for text in texts)


async def test_a_gateway_429_without_retry_after_uses_its_reset_header(
        fake_time: FakeTime) -> None:
    from bkcmdb_support import seed

    from synchronizer.bkcmdb.simulator import AuthConfig
    sim = BkCmdbSimulator(auth=AuthConfig(mode="gateway", app_secret=SECRET))
    seed(sim)
    async with sim, BkCmdbClient(settings_for(sim), clock=fake_time.clock,
                                 sleep=fake_time.sleep) as cmdb:
        sim.fail(kind="status", status=429)
        await cmdb.kube.list_clusters(BIZ)
    assert fake_time.sleeps == [1.0], "X-Bkapi-RateLimit-Reset: 1"
    assert issubclass(RateLimitedError, TransientError)


async def test_the_token_bucket_paces_requests_on_the_given_clock() -> None:
    time = FakeTime()
    bucket = TokenBucket(10.0, 2, clock=time.clock, sleep=time.sleep)
    waits = [await bucket.acquire() for _ in range(4)]
    assert waits[:2] == [0.0, 0.0], "the burst goes at once"
    assert waits[2:] == pytest.approx([0.1, 0.1])
    time.now += 5.0
    assert [await bucket.acquire() for _ in range(2)] == [0.0, 0.0], "refilled, capped at burst"
    assert await bucket.acquire() == pytest.approx(0.1)


async def test_every_request_of_the_client_goes_through_the_bucket(
        sim: BkCmdbSimulator, fake_time: FakeTime) -> None:
    async with BkCmdbClient(settings_for(sim, rate=2.0, burst=1), clock=fake_time.clock,
                            sleep=fake_time.sleep) as cmdb:
        for _ in range(3):
            await cmdb.kube.list_clusters(BIZ)
    assert fake_time.sleeps == pytest.approx([0.5, 0.5])


def test_bad_settings_are_one_clear_line() -> None:
    with pytest.raises(ValueError) as info:
        BkCmdbSettings(url="cmdb.example", auth="gateway", batch_size=500)
    text = str(info.value)
    assert "\n" not in text and "url must start with http" in text
    assert "needs app_code" in text and "batch_size must be 1..200" in text
