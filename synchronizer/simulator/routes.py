"""The Kubernetes API over HTTP: discovery, and one generic handler for every resource.

Why generic: apiserver serves every resource through the same REST handlers; what differs
per kind is data (`resources.ResourceSpec`) and strategy (`strategy`). So a request path is
parsed the way apiserver's RequestInfoFactory parses it, into (watch, namespace, resource,
name, subresource), and dispatched by verb:

    GET    /api/v1/{plural}                       list, or watch with ?watch=true
    GET    /api/v1/watch/{plural}                 watch (the legacy path form)
    GET    /api/v1/namespaces/{ns}/{plural}       the same within a namespace
    POST   /api/v1/namespaces/{ns}/{plural}       create (cluster-scoped: /api/v1/{plural})
    GET|PUT|PATCH|DELETE  .../{plural}/{name}     one object
    GET|PUT|PATCH         .../{plural}/{name}/status   the status subresource
    /apis/{group}/{version}/...                   the same for named groups
    GET /api, /api/v1, /apis, /apis/{group}, /apis/{group}/{version}   discovery

PATCH takes `application/merge-patch+json`, `application/strategic-merge-patch+json`
(applied as a merge patch: the same for labels, annotations, scalars; lists are replaced
rather than merged by key) and `application/json-patch+json`; server-side apply answers
415. A resource denied with 404 is missing from discovery as well.

Each request is counted (`SimCluster.requests`, `resource_requests`), offered to the
cluster's failure script, then served; a `SimError` anywhere becomes a `Status` response.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from .cluster import SimCluster
from .crd import CRD_RESOURCE, install_crd, uninstall_crd
from .faults import denied
from .resources import ResourceSpec, api_group, api_group_list, api_resource_list
from .selectors import matcher
from .strategy import Part
from .wire import SimError, error_line, no_such_resource

if TYPE_CHECKING:
    from .server import Simulator

TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
"""What Go's strconv.ParseBool (and so apiserver) accepts as true."""
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
"""After /namespaces/{name}/ these name a subresource of the namespace, not a resource."""
RETURNS_OBJECT_ON_DELETE = frozenset({"pods", "namespaces"})
"""Resources whose DELETE answers with the object; the others answer a Success Status."""

VERSION = {
    "major": "1", "minor": "29", "gitVersion": "v1.29.0-bkcmdb-sim",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.21.5", "compiler": "gc",
    "platform": "linux/amd64",
}

MERGE_TYPES = frozenset({"application/merge-patch+json",
                         "application/strategic-merge-patch+json"})
JSON_PATCH = "application/json-patch+json"

Handler = Callable[[web.Request, SimCluster], Awaitable[web.StreamResponse]]


def json_response(obj: Any, status: int = 200) -> web.Response:
    """A JSON body serialised with orjson."""
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error_response(exc: SimError) -> web.Response:
    """The Status response of an API error."""
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


def aborter(request: web.Request) -> Callable[[bool], None]:
    """A function that cuts the request's connection (True: with a TCP reset)."""
    transport = request.transport

    def abort(reset: bool) -> None:
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if reset and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    return abort


def bearer(request: web.Request) -> str | None:
    """The bearer token of a request, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def api_routes(sim: Simulator) -> list[web.RouteDef]:
    """Every API route, once at the root (cluster `default`) and once under each cluster."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            cluster_id = request.match_info.get("cluster")
            if cluster_id is not None and sim.bcs.token is not None \
                    and bearer(request) != sim.bcs.token:
                return json_response({"code": 401, "result": False,
                                      "message": "Resource is Unauthorized"}, 401)
            cluster = sim.clusters.get(cluster_id or "default")
            if cluster is None:
                return error_response(SimError(
                    404, f"cluster {cluster_id or 'default'!r} is not simulated here"))
            if cluster.token is not None and (cluster_id is None or sim.bcs.token is None) \
                    and bearer(request) != cluster.token:
                return error_response(SimError(401, "Unauthorized"))
            try:
                return await handler(request, cluster)
            except SimError as exc:
                return error_response(exc)
        return serve

    table: list[tuple[str, str, Handler]] = [
        ("GET", "/api", _api_versions),
        ("GET", "/api/v1", _core_resources),
        ("GET", "/apis", _groups),
        ("GET", "/apis/{group}", _group),
        ("GET", "/apis/{group}/{version}", _group_resources),
        ("*", "/api/v1/{tail:.+}", _resource_request),
        ("*", "/apis/{group}/{version}/{tail:.+}", _resource_request),
        ("GET", "/version", _version),
        ("GET", "/version/", _version),
        ("GET", "/healthz", _ok),
        ("GET", "/readyz", _ok),
        ("GET", "/livez", _ok),
    ]
    routes = []
    for prefix in ("", "/clusters/{cluster}"):
        for method, path, handler in table:
            routes.append(web.route(method, prefix + path, wrap(handler)))
    return routes


# -- discovery -------------------------------------------------------------------------------

async def _api_versions(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return json_response({"kind": "APIVersions", "versions": ["v1"],
                          "serverAddressByClientCIDRs": [
                              {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{request.host}"}]})


async def _core_resources(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    specs = cluster.resources.in_version("", "v1", cluster.hidden())
    return json_response(api_resource_list("v1", specs))


async def _groups(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return json_response(api_group_list(cluster.resources.groups(cluster.hidden())))


async def _group(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    versions = cluster.resources.groups(cluster.hidden()).get(request.match_info["group"])
    if not versions:
        raise no_such_resource()
    return json_response(api_group(request.match_info["group"], versions))


async def _group_resources(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    group, version = request.match_info["group"], request.match_info["version"]
    specs = cluster.resources.in_version(group, version, cluster.hidden())
    if not specs:
        raise no_such_resource()
    return json_response(api_resource_list(f"{group}/{version}", specs))


async def _version(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return json_response(VERSION)


async def _ok(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    return web.Response(text="ok")


# -- resources -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Target:
    """What a resource request addresses (apiserver's RequestInfo)."""

    spec: ResourceSpec
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


def parse_target(cluster: SimCluster, group: str, version: str, tail: str) -> Target:
    """Parse the path after `/api/v1/` or `/apis/{group}/{version}/`; 404 if it names no
    served resource, or a namespace where the resource has none."""
    parts = tail.split("/")
    if "" in parts:
        raise no_such_resource()
    watch = parts[0] == "watch"
    if watch:
        parts = parts[1:]
    namespace = None
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    if not parts or len(parts) > 3:
        raise no_such_resource()
    spec = cluster.resources.lookup(group, version, parts[0])
    if spec is None:
        raise no_such_resource()
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if spec.id == "namespaces":
        namespace = None
    elif (not spec.namespaced and namespace is not None) or (
            spec.namespaced and namespace is None and name is not None):
        raise no_such_resource()
    if sub is not None and (sub not in spec.subresources or sub != "status"):
        raise SimError(404, f"the simulator does not serve the {sub!r} subresource")
    return Target(spec, namespace, name, sub, watch)


def _op(method: str, target: Target, request: web.Request) -> str:
    if method == "GET":
        if target.watch or request.query.get("watch", "") in TRUE:
            return "watch"
        return "list" if target.name is None else "get"
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        return "write"
    raise SimError(405, f"the server does not allow this method on the requested resource "
                   f"({method})")


async def _resource_request(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    group = request.match_info.get("group", "")
    version = request.match_info.get("version", "v1")
    target = parse_target(cluster, group, version, request.match_info["tail"])
    op = _op(request.method, target, request)
    status = cluster.denied.get(target.spec.id)
    if status is not None:
        raise denied(status, plural=target.spec.plural, group=target.spec.group, op=op,
                     namespace=target.namespace)
    cluster.requests[op] += 1
    cluster.resource_requests[(target.spec.id, op)] += 1
    failure = cluster.failures.check(op, continued=bool(request.query.get("continue")),
                                     resource=target.spec.id)
    if failure is not None:
        raise failure
    if op == "watch":
        return await _watch(request, cluster, target)
    if op == "list":
        return await _list(request, cluster, target)
    if op == "get":
        return _get(cluster, target)
    return await WRITES[request.method](request, cluster, target)


def _match(request: web.Request, target: Target) -> Callable[[bytes], bool] | None:
    return matcher(target.spec.id, request.query.get("labelSelector"),
                   request.query.get("fieldSelector"))


async def _list(request: web.Request, cluster: SimCluster, target: Target) -> web.StreamResponse:
    if request.method != "GET":
        raise SimError(405, "method not allowed")
    q = request.query
    if cluster.page_delay > 0:
        await asyncio.sleep(cluster.page_delay)
    body = cluster.list_body(
        limit=_int_param(request, "limit"), continue_token=q.get("continue"),
        resource_version=q.get("resourceVersion"),
        resource_version_match=q.get("resourceVersionMatch"),
        namespace=target.namespace, resource=target.spec.id, match=_match(request, target),
    )
    return web.Response(body=body, content_type="application/json")


async def _watch(request: web.Request, cluster: SimCluster, target: Target) -> web.StreamResponse:
    q = request.query
    initial = q.get("sendInitialEvents", "") in TRUE
    match_rv = q.get("resourceVersionMatch")
    if match_rv and not (initial and match_rv == "NotOlderThan"):
        raise SimError(400, "resourceVersionMatch is forbidden for watch unless "
                       "sendInitialEvents is provided with NotOlderThan")
    timeout = _int_param(request, "timeoutSeconds")
    stream = cluster.open_watch(
        resource_version=q.get("resourceVersion"), namespace=target.namespace,
        bookmarks=q.get("allowWatchBookmarks", "") in TRUE, resource=target.spec.id,
        name=target.name, send_initial_events=initial, match=_match(request, target),
    )
    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        stream.on_abort = aborter(request)
        try:
            async with aclosing(stream.chunks(timeout_seconds=timeout or None)) as chunks:
                async for chunk in chunks:
                    await resp.write(chunk)
        except SimError as exc:  # headers are sent: the error goes in the stream, as apiserver
            await resp.write(error_line(exc))
        if not stream.aborted:
            await resp.write_eof()
    except ConnectionError:
        pass  # the client went away, or we cut the stream on purpose
    finally:
        stream.close()
    return resp


def _get(cluster: SimCluster, target: Target) -> web.StreamResponse:
    assert target.name is not None
    raw = cluster.get_raw(target.namespace, target.name, resource=target.spec.id)
    if raw is None:
        if target.spec.id == "namespaces":
            return json_response(_legacy_namespace(cluster, target.name))
        raise cluster.table(target.spec.id).missing(target.name)
    return web.Response(body=raw, content_type="application/json")


def _legacy_namespace(cluster: SimCluster, name: str) -> dict[str, Any]:
    """A namespace that was never created but has Pods (or is default/kube-system): the
    first simulator served these, and clusters built Pod by Pod still rely on it. The uid
    of kube-system is the cluster's incarnation."""
    exists = name in ("default", "kube-system") or bool(
        cluster.table("pods").in_namespace(name))
    if not exists:
        raise cluster.table("namespaces").missing(name)
    uid = cluster.incarnation if name == "kube-system" else str(
        uuid.uuid5(uuid.UUID(cluster.incarnation), name))
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": uid, "resourceVersion": "1",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def _part(target: Target) -> Part:
    return "status" if target.subresource == "status" else "main"


async def _create(request: web.Request, cluster: SimCluster, target: Target) -> web.StreamResponse:
    if target.name is not None:
        raise SimError(405, "POST is not allowed on a named object")
    if target.spec.namespaced and target.namespace is None:
        raise no_such_resource()
    obj = await _body(request)
    if not isinstance(obj, dict):
        raise SimError(400, f"the request body is not a {target.spec.kind} object")
    if obj.get("kind") not in (None, "", target.spec.kind) or obj.get("apiVersion") not in (
            None, "", target.spec.api_version):
        raise SimError(400, f"the API version and kind in the data ({obj.get('apiVersion')}, "
                       f"{obj.get('kind')}) do not match the expected "
                       f"({target.spec.api_version}, {target.spec.kind})")
    meta_ns = (obj.get("metadata") or {}).get("namespace")
    if target.spec.namespaced and meta_ns not in (None, "", target.namespace):
        raise SimError(400, "the namespace of the provided object does not match the "
                       "namespace sent on the request")
    if target.spec.id == CRD_RESOURCE:
        return json_response(install_crd(cluster, obj), status=201)
    return json_response(cluster.create(obj, namespace=target.namespace,
                                        resource=target.spec.id, part="main"), status=201)


async def _replace(request: web.Request, cluster: SimCluster, target: Target) -> web.StreamResponse:
    if target.name is None:
        raise SimError(405, "PUT needs an object name")
    obj = await _body(request)
    if not isinstance(obj, dict) or (obj.get("metadata") or {}).get("name") not in (
            None, target.name):
        raise SimError(400, "the name of the object does not match the name on the URL")
    return json_response(cluster.update(target.namespace, target.name, obj,
                                        resource=target.spec.id, part=_part(target)))


async def _patch(request: web.Request, cluster: SimCluster, target: Target) -> web.StreamResponse:
    if target.name is None:
        raise SimError(405, "PATCH needs an object name")
    kind = request.content_type
    if kind not in MERGE_TYPES and kind != JSON_PATCH:
        accepted = ", ".join(sorted((*MERGE_TYPES, JSON_PATCH)))
        raise SimError(415, f"the body of the request was in an unknown format - accepted "
                       f"media types include: {accepted} (got {kind})")
    patch = await _body(request)
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise SimError(400, "a JSON patch must be a JSON array of operations")
        return json_response(cluster.json_patch(target.namespace, target.name, patch,
                                                resource=target.spec.id, part=_part(target)))
    if not isinstance(patch, dict):
        raise SimError(400, "a merge patch must be a JSON object")
    return json_response(cluster.merge_patch(target.namespace, target.name, patch,
                                             resource=target.spec.id, part=_part(target)))


async def _delete(request: web.Request, cluster: SimCluster, target: Target) -> web.StreamResponse:
    if target.name is None or target.subresource is not None:
        raise SimError(405, "the simulator does not serve deletecollection")
    options: dict[str, Any] = {}
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            options = orjson.loads(raw) if raw.strip().startswith(b"{") else {}
    preconditions = options.get("preconditions") or {}
    propagation = options.get("propagationPolicy") or request.query.get(
        "propagationPolicy") or "Background"
    if target.spec.id == CRD_RESOURCE:
        return json_response(uninstall_crd(cluster, target.name))
    obj = cluster.delete(target.namespace, target.name, resource=target.spec.id,
                         propagation=propagation, uid=preconditions.get("uid"),
                         resource_version=preconditions.get("resourceVersion"))
    still_there = cluster.get_raw(target.namespace, target.name,
                                  resource=target.spec.id) is not None
    if still_there or target.spec.id in RETURNS_OBJECT_ON_DELETE:
        return json_response(obj)
    meta = obj["metadata"]
    return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Success", "details": {
                              "name": target.name, "group": target.spec.group,
                              "kind": target.spec.plural, "uid": meta.get("uid")}})


WRITES: dict[str, Callable[[web.Request, SimCluster, Target], Awaitable[web.StreamResponse]]] = {
    "POST": _create, "PUT": _replace, "PATCH": _patch, "DELETE": _delete,
}
