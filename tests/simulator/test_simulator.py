"""The simulated API server, driven over real HTTP on loopback with httpx.

Each test provokes one protocol behaviour the Kubernetes client depends on (consistent
paging, continue-token expiry, watch resume, bookmarks, 410 as an ERROR event, dropped and
stalled streams, timeoutSeconds, merge patch, scripted failures, raw lines) and checks it
the way a client would see it: status codes, Status bodies and JSON lines.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from synchronizer.kinds.pods import MODULE_ANNOTATION, SET_ANNOTATION, pod_fields
from synchronizer.simulator import SimCluster, Simulator, churn, make_pod, pod_name, populate
from synchronizer.simulator.watch import bookmark_tick

PODS = "/api/v1/pods"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    simulator.add_cluster("default")
    simulator.add_cluster("c1")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def c1(sim: Simulator) -> SimCluster:
    return sim.cluster("c1")


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url_for("c1"), timeout=10) as http:
        yield http


def new_pod(rng: random.Random, ns: str = "ns-a", *, annotated: bool | None = None) -> dict:
    return make_pod(ns, pod_name(rng, "app"), rng=rng, annotated=annotated)


async def fill(cluster: SimCluster, n: int, seed: int = 1) -> None:
    await populate(cluster, pods=n, namespaces=3, rng=random.Random(seed))


async def list_all(client: httpx.AsyncClient, limit: int, **params: Any) -> list[dict]:
    """Every page of a list; returns each page's decoded body."""
    pages, token = [], None
    while True:
        query = dict(params, limit=limit, **({"continue": token} if token else {}))
        resp = await client.get(PODS, params=query)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        token = pages[-1]["metadata"].get("continue")
        if not token:
            return pages


class Watch:
    """A watch read line by line, as a client does."""

    def __init__(self, client: httpx.AsyncClient, **params: Any) -> None:
        self.request = client.stream("GET", PODS, params={"watch": "true", **params})

    async def __aenter__(self) -> Watch:
        self.response = await self.request.__aenter__()
        self.lines = self.response.aiter_lines()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.request.__aexit__(*exc)

    async def next(self) -> dict:
        async with asyncio.timeout(10):
            return orjson.loads(await anext(self.lines))

    async def take(self, n: int) -> list[dict]:
        return [await self.next() for _ in range(n)]

    async def rest(self) -> list[str]:
        async with asyncio.timeout(10):
            return [line async for line in self.lines]


def rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


# -- pods ------------------------------------------------------------------------------------

async def test_pods_are_realistic_and_projectable(c1: SimCluster) -> None:
    rng = random.Random(3)
    for annotated in (True, False):
        pod = c1.create(new_pod(rng, annotated=annotated))
        raw = c1.get_raw("ns-a", pod["metadata"]["name"])
        assert raw is not None and 4000 <= len(raw) <= 6000
        for path in ("managedFields", "ownerReferences", "annotations", "labels", "uid"):
            assert pod["metadata"][path]
        assert len(pod["spec"]["containers"]) == 2
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
        _, version, fields = pod_fields(pod, biz_id=1)
        assert version == c1.resource_version
        assert (SET_ANNOTATION in pod["metadata"]["annotations"]) is annotated
        if annotated:
            assert fields["module_name"] == pod["metadata"]["annotations"][MODULE_ANNOTATION]
        else:
            assert (fields["set_name"], fields["module_name"]) == ("bkbcs", "bkbcs")


# -- lists -----------------------------------------------------------------------------------

async def test_paging_reads_one_snapshot_while_pods_change(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 1200)
    before = {(p["namespace"], p["name"]): p["rv"] for p in c1.truth()}
    first = (await client.get(PODS, params={"limit": 500})).json()
    snapshot_rv = rv(first)
    assert first["metadata"]["remainingItemCount"] == 700
    rng = random.Random(5)
    for ns, name in list(before)[-300:-200]:
        c1.delete(ns, name)
    for ns, name in list(before)[-100:]:
        c1.merge_patch(ns, name, {"metadata": {"labels": {"changed": "yes"}}})
    for _ in range(50):
        c1.create(new_pod(rng, "ns-0"))
    pages = [first]
    token = first["metadata"]["continue"]
    while token:
        page = (await client.get(PODS, params={"limit": 500, "continue": token})).json()
        pages.append(page)
        token = page["metadata"].get("continue")
    assert [rv(p) for p in pages] == [snapshot_rv] * 3
    seen = {(i["metadata"]["namespace"], i["metadata"]["name"]): rv(i)
            for p in pages for i in p["items"]}
    assert seen == before
    keys = [f"{ns}/{name}" for p in pages for i in p["items"]
            for ns, name in [(i["metadata"]["namespace"], i["metadata"]["name"])]]
    assert keys == sorted(keys)
    fresh = await list_all(client, 500)
    assert sum(len(p["items"]) for p in fresh) == 1200 - 100 + 50


async def test_continue_token_expires_after_compaction(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 30)
    first = (await client.get(PODS, params={"limit": 10})).json()
    ns, name = c1.random_key(random.Random(1)) or ("", "")
    c1.delete(ns, name)
    c1.compact()
    resp = await client.get(PODS, params={"limit": 10, "continue": first["metadata"]["continue"]})
    assert resp.status_code == 410
    status = resp.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert status["metadata"]["continue"]  # the inconsistent continuation apiserver offers


async def test_list_resource_version_semantics(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 20)
    old = c1.resource_version
    c1.create(new_pod(random.Random(2)))
    exact = (await client.get(PODS, params={"resourceVersion": old,
                                            "resourceVersionMatch": "Exact"})).json()
    assert (rv(exact), len(exact["items"])) == (old, 20)
    newer = (await client.get(PODS, params={"resourceVersion": old,
                                            "resourceVersionMatch": "NotOlderThan"})).json()
    assert (rv(newer), len(newer["items"])) == (c1.resource_version, 21)
    too_large = await client.get(PODS, params={"resourceVersion": c1.resource_version + 5})
    assert too_large.status_code == 504 and too_large.headers["Retry-After"] == "1"
    assert too_large.json()["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    page = (await client.get(PODS, params={"limit": 5})).json()
    both = await client.get(PODS, params={"limit": 5, "continue": page["metadata"]["continue"],
                                          "resourceVersion": rv(page)})
    assert both.status_code == 400
    bad = await client.get(PODS, params={"limit": 5, "continue": "garbage"})
    assert bad.status_code == 400 and bad.json()["reason"] == "BadRequest"
    ns_list = (await client.get("/api/v1/namespaces/ns-1/pods")).json()
    assert ns_list["items"] and {i["metadata"]["namespace"] for i in ns_list["items"]} == {"ns-1"}


# -- watches ---------------------------------------------------------------------------------

async def test_watch_from_a_version_replays_exactly_the_later_events(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(4)
    a = c1.create(new_pod(rng))
    since = c1.resource_version
    b = c1.create(new_pod(rng))
    c1.merge_patch("ns-a", a["metadata"]["name"], {"status": {"phase": "Failed"}})
    c1.delete("ns-a", b["metadata"]["name"])
    async with Watch(client, resourceVersion=since) as watch:
        events = await watch.take(3)
        assert [(e["type"], rv(e["object"])) for e in events] == [
            ("ADDED", since + 1), ("MODIFIED", since + 2), ("DELETED", since + 3)]
        assert events[2]["object"]["metadata"]["uid"] == b["metadata"]["uid"]
        live = c1.create(new_pod(rng))
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["uid"]) == (
            "ADDED", live["metadata"]["uid"])


async def test_watch_without_version_starts_with_synthetic_adds(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 7)
    async with Watch(client) as watch:
        initial = await watch.take(7)
        assert {e["type"] for e in initial} == {"ADDED"}
        assert {e["object"]["metadata"]["uid"] for e in initial} == {p["uid"] for p in c1.truth()}
        c1.delete(*(c1.random_key(random.Random(1)) or ("", "")))
        assert (await watch.next())["type"] == "DELETED"


async def test_bookmarks_arrive_and_timeout_seconds_ends_cleanly(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    c1.create(new_pod(random.Random(1)))
    async with Watch(client, resourceVersion=c1.resource_version, allowWatchBookmarks="true",
                     timeoutSeconds=1) as watch:
        lines = await watch.rest()  # ends by itself: a clean end of the chunked body
    events = [orjson.loads(line) for line in lines]
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[0]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": str(c1.resource_version)}}


@pytest.mark.parametrize("interval", [1.0, 60.0, 0.2])
def test_watches_opened_apart_bookmark_on_one_shared_tick(interval: float) -> None:
    """As kube-apiserver's bookmark buckets: watches due within one tick fire together."""
    tick = min(interval, 1.0)
    opened = [100.0 + k * tick / 7 for k in range(7)]  # seven watches, opened across a tick
    due = {bookmark_tick(now, interval) for now in opened}
    assert len(due) <= 2 and all(t >= now + interval for t in due for now in opened
                                 if bookmark_tick(now, interval) == t)
    assert all(abs(t / tick - round(t / tick)) < 1e-9 for t in due)
    assert all(bookmark_tick(now, interval) < now + interval + tick + 1e-9 for now in opened)


async def test_bookmarks_run_ahead_of_pod_events_and_keep_resumes_valid(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    c1.create(new_pod(random.Random(1)))
    async with Watch(client, resourceVersion=c1.resource_version,
                     allowWatchBookmarks="true") as watch:
        await c1.wait_watchers(1)
        ahead = c1.advance(5)  # other kinds changed: no Pod event, but a newer revision
        bookmark = await watch.next()
        while rv(bookmark["object"]) < ahead:
            bookmark = await watch.next()
        assert (bookmark["type"], rv(bookmark["object"])) == ("BOOKMARK", ahead)
    c1.compact()
    async with Watch(client, resourceVersion=ahead, allowWatchBookmarks="true") as watch:
        assert (await watch.next())["type"] == "BOOKMARK"  # not a 410


async def test_compacted_version_gets_410_error_event(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 3)
    old = c1.resource_version
    c1.create(new_pod(random.Random(1)))
    c1.compact()
    async with Watch(client, resourceVersion=old) as watch:
        assert watch.response.status_code == 200
        lines = await watch.rest()
    assert len(lines) == 1
    event = orjson.loads(lines[0])
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"], event["object"]["reason"]) == (
        "Status", 410, "Expired")


async def test_stalled_stream_sends_nothing_then_compaction_overtakes_it(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    c1.create(new_pod(random.Random(1)))
    async with Watch(client, resourceVersion=c1.resource_version,
                     allowWatchBookmarks="true") as watch:
        await c1.wait_watchers(1)
        (stream,) = c1.streams
        c1.stall_streams(True)
        c1.create(new_pod(random.Random(2)))
        # A round trip lets the loop run the woken watch; a live one would send the ADDED.
        assert (await client.get("/healthz")).status_code == 200
        assert (stream.sent_events, stream.cursor) == (0, c1.resource_version - 1)
        c1.compact()
        c1.stall_streams(False)
        event = await watch.next()
        assert (event["type"], event["object"]["code"]) == ("ERROR", 410)


@pytest.mark.parametrize("reset", [False, True])
async def test_drop_streams_cuts_the_connection(
        c1: SimCluster, client: httpx.AsyncClient, reset: bool) -> None:
    c1.create(new_pod(random.Random(1)))
    async with Watch(client, resourceVersion=c1.resource_version) as watch:
        await c1.wait_watchers(1)
        assert c1.drop_streams(reset=reset) == 1
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await watch.rest()
    assert c1.watchers == 0


async def test_raw_lines_are_injected_in_order(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    rng = random.Random(1)
    c1.create(new_pod(rng))
    async with Watch(client, resourceVersion=c1.resource_version) as watch:
        await c1.wait_watchers(1)
        c1.create(new_pod(rng))
        assert c1.inject_raw(b"{not json") == 1
        c1.inject_raw(b'{"type":"SURPRISE","object":{}}')
        c1.create(new_pod(rng))
        assert (await watch.next())["type"] == "ADDED"
        assert await anext(watch.lines) == "{not json"
        assert (await watch.next())["type"] == "SURPRISE"
        assert (await watch.next())["type"] == "ADDED"
        c1.replay(2)
        assert [e["type"] for e in await watch.take(2)] == ["ADDED", "ADDED"]


async def test_list_then_watch_under_churn_reproduces_the_truth(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 200)
    pages = await list_all(client, 50)
    state = {i["metadata"]["uid"]: rv(i) for p in pages for i in p["items"]}
    async with Watch(client, resourceVersion=rv(pages[0])) as watch:
        await churn(c1, events=400, rate=None, rng=random.Random(9))
        while True:
            event = await watch.next()
            uid = event["object"]["metadata"]["uid"]
            if event["type"] == "DELETED":
                del state[uid]
            else:
                state[uid] = rv(event["object"])
            if rv(event["object"]) == c1.resource_version:
                break
    assert state == {p["uid"]: p["rv"] for p in c1.truth()}


# -- writes ----------------------------------------------------------------------------------

async def test_writes_follow_apiserver_semantics(
        c1: SimCluster, client: httpx.AsyncClient) -> None:
    body = new_pod(random.Random(1), "ns-w")
    name = body["metadata"]["name"]
    path = f"/api/v1/namespaces/ns-w/pods/{name}"
    created = await client.post("/api/v1/namespaces/ns-w/pods", json=body)
    assert created.status_code == 201
    again = await client.post("/api/v1/namespaces/ns-w/pods", json=body)
    assert (again.status_code, again.json()["reason"]) == (409, "AlreadyExists")
    pod = created.json()
    merge = {"Content-Type": "application/merge-patch+json"}
    patch = {"metadata": {"labels": {"new": "1", "team": None},
                          "annotations": {SET_ANNOTATION: "s", MODULE_ANNOTATION: "m"}},
             "spec": {"tolerations": []}}
    patched = (await client.patch(path, content=orjson.dumps(patch), headers=merge)).json()
    labels = patched["metadata"]["labels"]
    assert labels["new"] == "1" and "team" not in labels
    assert patched["spec"]["tolerations"] == [] and rv(patched) == rv(pod) + 1
    assert patched["metadata"]["uid"] == pod["metadata"]["uid"]
    same = (await client.patch(path, content=orjson.dumps(patch), headers=merge)).json()
    assert rv(same) == rv(patched)  # a no-op write makes no new revision
    stale = {"metadata": {"resourceVersion": str(rv(pod)), "labels": {"x": "y"}}}
    conflict = await client.patch(path, content=orjson.dumps(stale), headers=merge)
    assert conflict.status_code == 409
    json_type = {"Content-Type": "application/json-patch+json"}
    failed_test = [{"op": "test", "path": "/metadata/resourceVersion", "value": str(rv(pod))}]
    refused = await client.patch(path, content=orjson.dumps(failed_test), headers=json_type)
    assert refused.status_code == 422  # what kopf expects when its `test` op fails
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": str(rv(patched))},
           {"op": "add", "path": "/metadata/labels/jp", "value": "yes"}]
    json_patched = await client.patch(path, content=orjson.dumps(ops), headers=json_type)
    assert json_patched.json()["metadata"]["labels"]["jp"] == "yes"
    apply = await client.patch(path, content=b"{}", headers={
        "Content-Type": "application/apply-patch+yaml"})
    assert apply.status_code == 415
    stale_put = await client.put(path, json=pod)
    assert stale_put.status_code == 409
    deleted = await client.delete(path)
    assert deleted.status_code == 200 and rv(deleted.json()) == c1.resource_version
    missing = await client.get(path)
    assert (missing.status_code, missing.json()["reason"]) == (404, "NotFound")


# -- scripted failures -----------------------------------------------------------------------

async def test_failure_scripts(c1: SimCluster, client: httpx.AsyncClient) -> None:
    await fill(c1, 12)
    c1.fail_next(429, retry_after=2, on="list")
    throttled = await client.get(PODS)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json()["reason"] == "TooManyRequests"
    assert throttled.json()["details"]["retryAfterSeconds"] == 2
    assert (await client.get(PODS)).status_code == 200
    c1.fail_next(410, on="list", after_pages=1)
    first = await client.get(PODS, params={"limit": 5})
    assert first.status_code == 200
    second = await client.get(PODS, params={"limit": 5,
                                            "continue": first.json()["metadata"]["continue"]})
    assert (second.status_code, second.json()["reason"]) == (410, "Expired")
    c1.fail_next(504, on="watch")
    assert (await client.get(PODS, params={"watch": "1"})).status_code == 504
    c1.fail_next(403, count=None)
    assert [(await client.get(PODS)).status_code for _ in range(3)] == [403] * 3
    c1.clear_failures()
    assert (await client.get(PODS)).status_code == 200
    assert c1.requests["list"] >= 8 and c1.failures.injected == 6


# -- server, admin API, process --------------------------------------------------------------

async def test_cluster_prefixes_and_default_root(sim: Simulator) -> None:
    sim.cluster("default").create(new_pod(random.Random(1)))
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        root = (await http.get(PODS)).json()
        prefixed = (await http.get("/clusters/default" + PODS)).json()
        assert root["items"] == prefixed["items"] and len(root["items"]) == 1
        assert (await http.get("/clusters/c1" + PODS)).json()["items"] == []
        assert (await http.get("/clusters/nope" + PODS)).status_code == 404
        assert (await http.get("/version")).json()["major"] == "1"
        assert (await http.get("/clusters/c1/healthz")).text == "ok"
        kube_system = (await http.get("/clusters/c1/api/v1/namespaces/kube-system")).json()
        assert kube_system["metadata"]["uid"] == sim.cluster("c1").incarnation


async def test_admin_api_drives_a_cluster(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url + "/_sim/clusters") as admin:
        made = await admin.post("/x1", json={"bookmark_interval": 0.5})
        assert made.status_code == 201 and made.json()["url"] == sim.url_for("x1")
        filled = (await admin.post("/x1/populate", json={"pods": 40, "seed": 3})).json()
        assert filled["created"] == 40
        started = await admin.post("/x1/churn", json={"events": 100, "rate": None, "seed": 1})
        assert started.status_code == 202
        done = await sim.wait_churn("x1")
        assert done.done == 100 and not done.running
        assert (await admin.get("/x1/churn")).json()["done"] == 100
        truth = (await admin.get("/x1/truth")).json()
        cluster = sim.cluster("x1")
        assert truth["resourceVersion"] == cluster.resource_version
        assert truth["pods"] == cluster.truth() and len(truth["pods"]) > 30
        assert (await admin.post("/x1/compact", json={})).json() == {
            "compacted": cluster.resource_version}
        assert (await admin.post("/x1/fail", json={"status": 500, "on": "list"})).json() == {
            "pending": 1}
        assert (await admin.post("/x1/config", json={"page_delay": 0.0})).status_code == 200
        assert (await admin.post("/x1/drop", json={})).json() == {"dropped": 0}
        assert (await admin.post("/x1/inject", content=b"raw")).json() == {"streams": 0}
        old = cluster.incarnation
        reset = (await admin.post("/x1/reset_incarnation", json={"start_rv": 1})).json()
        assert reset["incarnation"] != old and reset["resourceVersion"] <= len(cluster) + 1
        assert (await admin.get("/nope")).status_code == 404
        assert (await admin.post("/x1/fail", content=b"[1]")).status_code == 400


async def test_restart_on_the_same_port_keeps_versions(sim: Simulator) -> None:
    cluster = sim.cluster("c1")
    cluster.create(new_pod(random.Random(1)))
    before, url = cluster.resource_version, sim.url_for("c1")
    await sim.stop()
    await sim.start(port=sim.port or 0)
    assert sim.url_for("c1") == url
    async with httpx.AsyncClient(base_url=url) as http:
        assert rv((await http.get(PODS)).json()) == before


def test_standalone_process_prints_url_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "synchronizer.simulator", "--port", "0", "--pods", "25",
         "--clusters", "default,b"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        listed = httpx.get(url + "/clusters/b" + PODS, timeout=10).json()
        assert len(listed["items"]) == 25
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
