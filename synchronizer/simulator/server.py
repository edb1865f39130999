"""The simulated API server: many `SimCluster`s served over real HTTP by aiohttp.

Why real HTTP and not a fake client: the Kubernetes client is the part most likely to be
wrong about the wire (chunked watch streams, Status bodies, 410 as an ERROR event, continue
tokens, Retry-After), so tests drive it through a socket against a server that speaks the
protocol the way kube-apiserver does. Each cluster lives under `/clusters/<id>`; a cluster
named `default` is also served at the root, so `server: http://127.0.0.1:18080` works.

Routes under each prefix: `GET /api/v1/pods` (list, or a watch with `watch=true`),
`GET /api/v1/watch/pods`, `GET|POST /api/v1/namespaces/{ns}/pods`,
`GET|PUT|PATCH|DELETE /api/v1/namespaces/{ns}/pods/{name}` (PATCH takes
`application/merge-patch+json`; a strategic merge patch is applied as one),
`GET /api/v1/namespaces/{ns}` (the uid of `kube-system` is the cluster's incarnation),
`GET /api`, `/api/v1`, `/version`, `/healthz`, `/readyz`, `/livez`. The control API for
other processes is under `/_sim/` (see `admin`).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from .admin import admin_routes
from .churn import ChurnProgress, churn
from .cluster import SimCluster
from .wire import SimError

Handler = Callable[[web.Request, SimCluster], Awaitable[web.StreamResponse]]
TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
"""What Go's strconv.ParseBool (and so apiserver) accepts as true."""

VERSION = {
    "major": "1", "minor": "29", "gitVersion": "v1.29.0-bkcmdb-sim",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.21.5", "compiler": "gc",
    "platform": "linux/amd64",
}


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _error(exc: SimError) -> web.Response:
    return web.Response(body=exc.body(), status=exc.code, content_type="application/json",
                        headers=exc.headers())


def _int_param(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise SimError(400, f"invalid {name}: {text!r}") from None


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise SimError(400, f"the request body is not valid JSON: {exc}") from None


def _aborter(request: web.Request) -> Callable[[bool], None]:
    transport = request.transport

    def abort(reset: bool) -> None:
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if reset and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    return abort


class Simulator:
    """Hosts simulated clusters on one HTTP port; also the owner of admin-started churns."""

    def __init__(self, *, bookmark_interval: float = 1.0, history_limit: int | None = 100_000,
                 seed: int | None = None) -> None:
        self.bookmark_interval = bookmark_interval
        self.history_limit = history_limit
        self.seed = seed
        self.host = "127.0.0.1"
        self.port: int | None = None
        """The bound port; kept after `stop` so `start(port=sim.port)` restarts in place."""
        self._clusters: dict[str, SimCluster] = {}
        self._runner: web.AppRunner | None = None
        self._churns: dict[str, tuple[asyncio.Task[ChurnProgress], ChurnProgress]] = {}

    # -- clusters ------------------------------------------------------------------------------

    def add_cluster(self, cluster_id: str, **options: Any) -> SimCluster:
        """Create (or return the existing) cluster `cluster_id`; options go to `SimCluster`."""
        if cluster_id not in self._clusters:
            options.setdefault("bookmark_interval", self.bookmark_interval)
            options.setdefault("history_limit", self.history_limit)
            if self.seed is not None:
                options.setdefault("seed", self.seed + len(self._clusters))
            self._clusters[cluster_id] = SimCluster(cluster_id, **options)
        return self._clusters[cluster_id]

    def remove_cluster(self, cluster_id: str) -> None:
        """Forget a cluster; its watches are cut and its requests answer 404."""
        cluster = self._clusters.pop(cluster_id)
        cluster.drop_streams()

    def cluster(self, cluster_id: str) -> SimCluster:
        """The cluster `cluster_id` (KeyError if absent)."""
        return self._clusters[cluster_id]

    @property
    def clusters(self) -> Mapping[str, SimCluster]:
        """Every cluster by id."""
        return self._clusters

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server."""
        if self.port is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}"

    def url_for(self, cluster_id: str) -> str:
        """The API server URL of one cluster: `http://host:port/clusters/<id>`."""
        return f"{self.base_url}/clusters/{cluster_id}"

    # -- churn ---------------------------------------------------------------------------------

    def start_churn(self, cluster_id: str, *, events: int | None, rate: float | None,
                    seed: int | None = None) -> ChurnProgress:
        """Run `churn` on a cluster in the background (replacing a running one)."""
        self.stop_churn(cluster_id)
        progress = ChurnProgress(target=events)
        task = asyncio.get_running_loop().create_task(churn(
            self.cluster(cluster_id), events=events, rate=rate, rng=random.Random(seed),
            progress=progress))
        self._churns[cluster_id] = (task, progress)
        return progress

    def churn_progress(self, cluster_id: str) -> ChurnProgress | None:
        """The latest churn's progress for a cluster, or None if none was started."""
        entry = self._churns.get(cluster_id)
        return None if entry is None else entry[1]

    async def wait_churn(self, cluster_id: str) -> ChurnProgress:
        """Wait for a cluster's churn to finish (or be cancelled) and return its progress."""
        task, progress = self._churns[cluster_id]
        await asyncio.gather(task, return_exceptions=True)
        return progress

    def stop_churn(self, cluster_id: str) -> None:
        """Cancel a running churn (its progress stays readable)."""
        entry = self._churns.get(cluster_id)
        if entry is not None and not entry[0].done():
            entry[0].cancel()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind and serve; returns the base URL. Port 0 picks a free port."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(api_routes(self))
        app.add_routes(admin_routes(self))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        """Cut every watch, cancel admin churns and close the port (clusters are kept)."""
        for cluster in self._clusters.values():
            cluster.drop_streams()
        tasks = [task for task, _ in self._churns.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


# -- the Kubernetes API ----------------------------------------------------------------------

def api_routes(sim: Simulator) -> list[web.RouteDef]:
    """Every API route, once at the root (cluster `default`) and once under each cluster."""

    def wrap(handler: Handler, op: str | None) -> Callable[[web.Request], Awaitable[Any]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            cluster_id = request.match_info.get("cluster", "default")
            cluster = sim.clusters.get(cluster_id)
            if cluster is None:
                return _error(SimError(404, f"cluster {cluster_id!r} is not simulated here"))
            try:
                if op is not None:
                    cluster.requests[op] += 1
                    failure = cluster.failures.check(op)
                    if failure is not None:
                        return _error(failure)
                return await handler(request, cluster)
            except SimError as exc:
                return _error(exc)
        return serve

    table: list[tuple[str, str, Handler, str | None]] = [
        ("GET", "/api/v1/pods", _list_or_watch, None),
        ("GET", "/api/v1/watch/pods", _watch_only, None),
        ("GET", "/api/v1/namespaces/{ns}/pods", _list_or_watch, None),
        ("POST", "/api/v1/namespaces/{ns}/pods", _create, "write"),
        ("GET", "/api/v1/namespaces/{ns}/pods/{name}", _get, "get"),
        ("PUT", "/api/v1/namespaces/{ns}/pods/{name}", _replace, "write"),
        ("PATCH", "/api/v1/namespaces/{ns}/pods/{name}", _patch, "write"),
        ("DELETE", "/api/v1/namespaces/{ns}/pods/{name}", _delete, "write"),
        ("GET", "/api/v1/namespaces/{ns}", _namespace, "get"),
        ("GET", "/api", _api_versions, None),
        ("GET", "/api/v1", _api_resources, None),
        ("GET", "/version", _version, None),
        ("GET", "/version/", _version, None),
        ("GET", "/healthz", _ok, None),
        ("GET", "/readyz", _ok, None),
        ("GET", "/livez", _ok, None),
    ]
    routes = []
    for prefix in ("", "/clusters/{cluster}"):
        for method, path, handler, op in table:
            routes.append(web.route(method, prefix + path, wrap(handler, op)))
    return routes


async def _list_or_watch(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    if request.query.get("watch", "") in TRUE:
        return await _watch_only(request, cluster)
    q = request.query
    cluster.requests["list"] += 1
    failure = cluster.failures.check("list", continued=bool(q.get("continue")))
    if failure is not None:
        return _error(failure)
    if cluster.page_delay > 0:
        await asyncio.sleep(cluster.page_delay)
    body = cluster.list_body(
        limit=_int_param(request, "limit"), continue_token=q.get("continue"),
        resource_version=q.get("resourceVersion"),
        resource_version_match=q.get("resourceVersionMatch"),
        namespace=request.match_info.get("ns"),
    )
    return web.Response(body=body, content_type="application/json")


async def _watch_only(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    q = request.query
    cluster.requests["watch"] += 1
    failure = cluster.failures.check("watch")
    if failure is not None:
        return _error(failure)
    if q.get("resourceVersionMatch"):
        raise SimError(400, "resourceVersionMatch is forbidden for watch")
    timeout = _int_param(request, "timeoutSeconds")
    stream = cluster.open_watch(
        resource_version=q.get("resourceVersion"), namespace=request.match_info.get("ns"),
        bookmarks=q.get("allowWatchBookmarks", "") in TRUE,
    )
    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        stream.on_abort = _aborter(request)
        async with aclosing(stream.chunks(timeout_seconds=timeout or None)) as chunks:
            async for chunk in chunks:
                await resp.write(chunk)
        if not stream.aborted:
            await resp.write_eof()
    except ConnectionError:
        pass  # the client went away, or we cut the stream on purpose
    finally:
        stream.close()
    return resp


async def _get(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    ns, name = request.match_info["ns"], request.match_info["name"]
    raw = cluster.get_raw(ns, name)
    if raw is None:
        raise SimError(404, f'pods "{name}" not found', details={"name": name, "kind": "pods"})
    return web.Response(body=raw, content_type="application/json")


async def _create(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    pod = await _body(request)
    ns = request.match_info["ns"]
    if not isinstance(pod, dict):
        raise SimError(400, "the request body is not a Pod object")
    if (pod.get("metadata") or {}).get("namespace") not in (None, "", ns):
        raise SimError(400, "the namespace of the provided object does not match the "
                       "namespace sent on the request")
    return _json(cluster.create(pod, namespace=ns), status=201)


async def _replace(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    pod = await _body(request)
    ns, name = request.match_info["ns"], request.match_info["name"]
    if not isinstance(pod, dict) or (pod.get("metadata") or {}).get("name") not in (None, name):
        raise SimError(400, "the name of the object does not match the name on the URL")
    return _json(cluster.update(ns, name, pod))


MERGE_TYPES = frozenset({"application/merge-patch+json",
                         "application/strategic-merge-patch+json"})
"""Patch types served. A strategic merge patch is applied as a JSON merge patch: the same
for labels, annotations and scalars (what clients patch on Pods); lists are replaced
rather than merged by key. JSON patch and server-side apply answer 415."""


async def _patch(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    if request.content_type not in MERGE_TYPES:
        raise SimError(415, f"the body of the request was in an unknown format - accepted "
                       f"media types include: {', '.join(sorted(MERGE_TYPES))} "
                       f"(got {request.content_type})")
    patch = await _body(request)
    if not isinstance(patch, dict):
        raise SimError(400, "a merge patch for a Pod must be a JSON object")
    return _json(cluster.merge_patch(request.match_info["ns"], request.match_info["name"], patch))


async def _delete(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return _json(cluster.delete(request.match_info["ns"], request.match_info["name"]))


async def _namespace(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    ns = request.match_info["ns"]
    exists = ns in ("default", "kube-system") or any(
        k.startswith(ns + "/") for k in cluster.sorted_keys())
    if not exists:
        raise SimError(404, f'namespaces "{ns}" not found')
    uid = cluster.incarnation if ns == "kube-system" else str(
        uuid.uuid5(uuid.UUID(cluster.incarnation), ns))
    return _json({"kind": "Namespace", "apiVersion": "v1",
                  "metadata": {"name": ns, "uid": uid, "resourceVersion": "1",
                               "creationTimestamp": "2024-01-01T00:00:00Z"},
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})


async def _api_versions(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{request.host}"}]})


async def _api_resources(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return _json({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                  "resources": [{"name": "pods", "singularName": "pod", "namespaced": True,
                                 "kind": "Pod", "shortNames": ["po"],
                                 "verbs": ["create", "delete", "get", "list", "patch",
                                           "update", "watch"]}]})


async def _version(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return _json(VERSION)


async def _ok(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return web.Response(text="ok")
