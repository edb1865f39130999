"""A real kopf operator against the simulated home cluster: the SyncCluster lifecycle.

kopf runs embedded the way its documentation recommends for an application that has its
own event loop: `kopf.operator()` in a thread of its own, with a stop flag and a ready flag,
standalone (no peering), cluster-wide. It logs in with a bearer token the home cluster
requires. The operator sees a create, a spec change (a generation bump) and a deletion;
it writes status through the status subresource, and its finalizer holds the deletion
until its delete handler has run. Nothing kopf logs may be an error, and the only warning
allowed is the one about OS signals in a non-main thread (which embedding implies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import kopf
import orjson
import pytest

from synchronizer.simulator import SimCluster, Simulator
from synchronizer.simulator.crd import SYNC_CLUSTER_CRD, install_crd
from synchronizer.simulator.nodes import make_namespace

GROUP, VERSION, PLURAL = "bkcmdb.bkbcs.tencent.com", "v1", "syncclusters"
SC = f"/apis/{GROUP}/{VERSION}/namespaces/bkcmdb/{PLURAL}"
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
TOKEN = "home-token"
EXPECTED_WARNINGS = {"OS signals are ignored: running not in the main thread."}
TIMEOUT = 60


class Collector(logging.Handler):
    """Every record kopf logs, from whichever thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def kopf_logs() -> Iterator[Collector]:
    collector = Collector()
    logger = logging.getLogger("kopf")
    old_level = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(old_level)


def operator_registry(url: str, seen: list[tuple[str, Any]]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, token=TOKEN, default_namespace="bkcmdb")

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(body: Any, meta: Any, patch: kopf.Patch, **_: Any) -> None:
        seen.append(("create", meta["generation"]))
        kopf.info(body, reason="Registered", message=f"cluster {meta['name']} registered")
        patch.status["state"] = "Running"
        patch.status["owner"] = "sync-1"
        patch.status["observedGeneration"] = meta["generation"]
        patch.status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Synced"}]

    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    def updated(meta: Any, old: Any, new: Any, patch: kopf.Patch, **_: Any) -> None:
        seen.append(("update", (meta["generation"], old["bizId"], new["bizId"])))
        patch.status["observedGeneration"] = meta["generation"]

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(meta: Any, **_: Any) -> None:
        seen.append(("delete", bool(meta.get("deletionTimestamp"))))

    return registry


def run_operator(registry: kopf.OperatorRegistry, stop: threading.Event,
                 ready: threading.Event, errors: list[BaseException],
                 namespaces: list[str]) -> None:
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 30
    settings.networking.request_timeout = 30
    try:
        asyncio.run(kopf.operator(registry=registry, settings=settings, standalone=True,
                                  clusterwide=not namespaces, namespaces=namespaces,
                                  stop_flag=stop, ready_flag=ready))
    except BaseException as exc:  # reported to the test, not lost in the thread
        errors.append(exc)


def sync_cluster(cluster: SimCluster) -> dict[str, Any] | None:
    return cluster.get("bkcmdb", "cluster-a", resource=PLURAL)


@pytest.fixture
async def home(sim: Simulator) -> SimCluster:
    cluster = sim.add_cluster("home", token=TOKEN)
    install_crd(cluster, SYNC_CLUSTER_CRD)
    cluster.create(make_namespace("bkcmdb"), resource="namespaces")
    return cluster


@pytest.mark.parametrize("namespaces", [[], ["bkcmdb"]], ids=["clusterwide", "namespaced"])
async def test_kopf_runs_the_sync_cluster_lifecycle(sim: Simulator, home: SimCluster,
                                                    namespaces: list[str]) -> None:
    seen: list[tuple[str, Any]] = []
    errors: list[BaseException] = []
    stop, ready = threading.Event(), threading.Event()
    url = sim.url_for("home")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with kopf_logs() as logs:
        thread = threading.Thread(target=run_operator, name="kopf", daemon=True,
                                  args=(operator_registry(url, seen), stop, ready, errors,
                                        namespaces))
        thread.start()
        try:
            assert await asyncio.to_thread(ready.wait, TIMEOUT), errors
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http, \
                    asyncio.timeout(TIMEOUT):
                assert (await httpx.AsyncClient(base_url=url).get(SC)).status_code == 401
                made = await http.post(SC, json={
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "SyncCluster",
                    "metadata": {"name": "cluster-a"},
                    "spec": {"clusterId": "cluster-a", "bizId": 2,
                             "server": "https://10.0.0.1:6443"}})
                assert made.status_code == 201
                await home.wait_until(lambda: (sync_cluster(home) or {}).get(
                    "status", {}).get("state") == "Running")
                obj = sync_cluster(home)
                assert obj is not None and FINALIZER in obj["metadata"]["finalizers"]
                assert obj["status"]["observedGeneration"] == 1
                assert "kopf.zalando.org/last-handled-configuration" in obj["metadata"][
                    "annotations"]
                await http.patch(f"{SC}/cluster-a", content=orjson.dumps(
                    {"spec": {"bizId": 3}}),
                    headers={"Content-Type": "application/merge-patch+json"})
                await home.wait_until(lambda: (sync_cluster(home) or {}).get(
                    "status", {}).get("observedGeneration") == 2)
                deleting = await http.delete(f"{SC}/cluster-a")
                assert deleting.json()["metadata"]["deletionTimestamp"]
                await home.wait_until(lambda: sync_cluster(home) is None)
                await home.wait_until(lambda: home.count("events") > 0)
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, TIMEOUT)
    assert not thread.is_alive() and not errors
    assert seen == [("create", 1), ("update", (2, 2, 3)), ("delete", True)]
    events = [e["object"] for e in home.truth("events", objects=True)]
    assert events and {e["involvedObject"]["kind"] for e in events} == {"SyncCluster"}
    assert [(e["reason"], e["message"], e["involvedObject"]["name"]) for e in events] == [
        ("Registered", "cluster cluster-a registered", "cluster-a")]
    problems = [f"{r.levelname}: {r.getMessage()}" for r in logs.records
                if r.levelno >= logging.WARNING and r.getMessage() not in EXPECTED_WARNINGS]
    assert not problems
    requests = home.resource_requests
    for resource, op in ((f"{PLURAL}.{GROUP}", "watch"), (f"{PLURAL}.{GROUP}", "write"),
                         ("customresourcedefinitions.apiextensions.k8s.io", "watch"),
                         ("events", "write")):
        assert requests[(resource, op)] > 0, (resource, op)
    assert (requests[("namespaces", "watch")] > 0) == bool(namespaces)
